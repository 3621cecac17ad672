// libFuzzer target: pipeline files as `keyline provision` validates them (YAML, `${NAME}`
// substitution, every field), with no environment.
@testable import Provisioning

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    var reading = PipelineReading(file: "/nonexistent/fuzz/pipeline.yaml", environment: ["STATION": "s1"], overrides: PipelineOverrides())
    _ = reading.read(text)
    return 0
}
