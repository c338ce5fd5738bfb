import Foundation

/// Where Debian's `ejabberd` package (and the Erlang it depends on) put what a private node needs.
struct EjabberdInstallation: Sendable {
    /// `erl`, which runs the nodes and the `ejabberd_ctl` commands.
    var erl: URL
    /// `epmd`, the Erlang port mapper each cluster runs privately on a port of its own.
    var epmd: URL
    /// The folder holding `ejabberd-<version>/` and its dependencies' applications: `ERL_LIBS` of the nodes (Debian
    /// puts them in the multiarch folder, `/usr/lib/x86_64-linux-gnu`, which `/usr/sbin/ejabberdctl` names).
    var libraries: URL
    /// ejabberd's version as its folder names it (`23.01-1` on Debian 12).
    var version: String

    static let installAdvice =
        "Install it: `apt-get install ejabberd` (Debian/Ubuntu; scripts/install-deps.sh does it and stops the system service it starts)."

    /// Folders searched for `erl` and `epmd` after `PATH`.
    static let extraSearchFolders = ["/usr/bin", "/usr/local/bin", "/usr/lib/erlang/bin", "/usr/sbin"]

    /// Finds the installation. `HANDOFF_EJABBERD_LIBS` overrides the library folder.
    static func locate(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> EjabberdInstallation {
        let folders = searchFolders(environment: environment)
        let erl = try executable("erl", in: folders)
        let epmd = try executable("epmd", in: folders)
        let candidates: [URL]
        if let override = environment["HANDOFF_EJABBERD_LIBS"], !override.isEmpty {
            candidates = [URL(fileURLWithPath: override, isDirectory: true)]
        } else {
            candidates = librariesNamedByEjabberdctl() + multiarchLibraryFolders() + [URL(fileURLWithPath: "/usr/lib/erlang/lib")]
        }
        for folder in candidates {
            if let version = ejabberdVersion(in: folder) {
                return EjabberdInstallation(erl: erl, epmd: epmd, libraries: folder, version: version)
            }
        }
        throw ClusterTestKitError(
            .executableNotFound,
            "ejabberd's Erlang applications were not found (searched \(candidates.map(\.path).joined(separator: ", ")) for "
                + "ejabberd-*/ebin/ejabberd.app). \(installAdvice)"
        )
    }

    private static func searchFolders(environment: [String: String]) -> [String] {
        let path = environment["PATH"] ?? ""
        var seen = Set<String>()
        return (path.split(separator: ":").map(String.init) + extraSearchFolders).filter { !$0.isEmpty && seen.insert($0).inserted }
    }

    private static func executable(_ name: String, in folders: [String]) throws -> URL {
        for folder in folders {
            let candidate = URL(fileURLWithPath: folder).appendingPathComponent(name)
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        }
        throw ClusterTestKitError(
            .executableNotFound, "`\(name)` was not found (searched \(folders.joined(separator: ":"))). \(installAdvice)"
        )
    }

    /// The `ERL_LIBS='…'` line of Debian's `/usr/sbin/ejabberdctl`.
    private static func librariesNamedByEjabberdctl() -> [URL] {
        guard let script = try? String(contentsOfFile: "/usr/sbin/ejabberdctl", encoding: .utf8) else { return [] }
        for line in script.split(separator: "\n") where line.hasPrefix("ERL_LIBS=") {
            let value = line.dropFirst("ERL_LIBS=".count).trimmingCharacters(in: CharacterSet(charactersIn: "'\" "))
            if !value.isEmpty, !value.contains("$") { return [URL(fileURLWithPath: value, isDirectory: true)] }
        }
        return []
    }

    /// `/usr/lib/<triplet>` folders.
    private static func multiarchLibraryFolders() -> [URL] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib")) ?? []
        return names.filter { $0.hasSuffix("-linux-gnu") }.sorted().map { URL(fileURLWithPath: "/usr/lib/\($0)", isDirectory: true) }
    }

    /// The version of the `ejabberd-<version>` application in `folder`, if there is one.
    private static func ejabberdVersion(in folder: URL) -> String? {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        for name in names.sorted().reversed() where name.hasPrefix("ejabberd-") {
            let app = folder.appendingPathComponent(name).appendingPathComponent("ebin/ejabberd.app")
            if FileManager.default.fileExists(atPath: app.path) { return String(name.dropFirst("ejabberd-".count)) }
        }
        return nil
    }
}
