import COpenSSL

/// OpenSSL's process-wide set-up, made before keyline's first OpenSSL call.
///
/// By default OpenSSL frees its global state (locks included) from an atexit handler
/// (OPENSSL_init_crypto(3), OPENSSL_INIT_NO_ATEXIT). A process that exits while another thread is
/// inside OpenSSL then has that thread take a freed lock and dereference NULL: keyline exits with
/// device tasks still running (a second Ctrl-C exits at once), and the test process, whose
/// simulated devices make keys on their own queues, crashed that way at exit on CI. Only the first
/// OpenSSL initialisation in a process decides, so every entry point of this module comes here
/// first, and `keyline` and `keyline-bench` call `prepare()` before anything else: libpq, which
/// uses OpenSSL for TLS and SCRAM logins, would otherwise decide when it connects first. The OS
/// reclaims the memory.
public enum OpenSSLRuntime {
    private static let initialised: Bool = OPENSSL_init_crypto(UInt64(OPENSSL_INIT_NO_ATEXIT), nil) == 1

    /// Sets OpenSSL up without its exit-time cleanup (once per process; later calls are free).
    public static func prepare() { _ = initialised }

    /// An entry point's first step: OpenSSL set up, this thread's error queue cleared.
    static func enter() {
        prepare()
        ERR_clear_error()
    }
}
