#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// SIGHUP, which several parts of the sensor listen to (GeoIP and indicator reloads, rules reload).
///
/// Its default action ends the process, so it must be ignored before dispatch sources listen for it. That
/// must happen exactly once, before the first source: libdispatch installs its own handler when the first
/// source for a signal registers, and a later `signal(SIGHUP, SIG_IGN)` replaces that handler, silently
/// deafening every source already listening. Every SIGHUP listener calls `prepare()` first.
public enum HangupSignal {
    public static func prepare() { _ = ignoreDefaultOnce }
    static let ignoreDefaultOnce: Void = { signal(SIGHUP, SIG_IGN); return () }()
}
