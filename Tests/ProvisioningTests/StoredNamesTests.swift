import DeviceKeys
import Provisioning
import Registry
import Testing

/// Names that cross the Registry boundary without a shared type (Registry does not link OpenSSL).
@Suite struct StoredNames {
    @Test func registryAlgorithmsAreDeviceKeyAlgorithms() {
        #expect(RegisteredKeyAlgorithm.allCases.map(\.rawValue) == KeyAlgorithm.allCases.map(\.rawValue))
    }

    @Test func workflowOrderIsTheDesignOrder() {
        #expect(DeviceWorkflowState.allCases.map(\.rawValue) ==
                ["detected", "dfu", "flashed", "server_key", "key_ready", "escrowed", "registered", "done", "failed"])
    }
}
