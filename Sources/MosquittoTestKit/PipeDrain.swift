import Foundation

/// Reads a pipe until its end on a thread of its own, handing each chunk to `receive`: for the output of child
/// processes in tests. Foundation's `FileHandle.readabilityHandler` on Linux uses a dispatch source per handle, and
/// test runs with many short-lived children crashed libdispatch's manager thread with it (seen here: 2 runs in 4
/// with the CLI tests); a blocking read on a dedicated thread has no source to race.
public enum PipeDrain {
    /// Starts draining `handle`; `receive` is called on the drain's thread, and once more with empty data at the end.
    public static func start(_ handle: FileHandle, name: String, _ receive: @escaping @Sendable (Data) -> Void) {
        let thread = Thread {
            while true {
                let data = handle.availableData
                receive(data)
                if data.isEmpty { return }
            }
        }
        thread.name = name
        thread.start()
    }
}
