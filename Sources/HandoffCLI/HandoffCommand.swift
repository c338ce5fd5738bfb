import ArgumentParser
import Foundation
import Handoff
import MosquittoClient

/// `handoff`: the operator's tool for what waits on the broker (README "Operating it"; docs/PROTOCOL.md is the
/// contract it reads and writes).
@main
struct HandoffCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "handoff",
        abstract: "Inspect and operate the handoffs, checkpoints and dead letters that wait on an MQTT broker.",
        discussion: """
            Connection settings come from flags or, when a flag is absent, from the environment: HANDOFF_BROKER_URL, \
            HANDOFF_PREFIX, HANDOFF_USERNAME, HANDOFF_PASSWORD, HANDOFF_CA_FILE, HANDOFF_CERT_FILE, HANDOFF_KEY_FILE, \
            HANDOFF_NO_VERIFY_HOSTNAME, HANDOFF_TIMEOUT. Errors are one line on standard error and exit status 1 \
            (64 for a command line that cannot be used).
            """,
        subcommands: [
            ListCommand.self, ShowCommand.self, WatchCommand.self, DeadLettersCommand.self, RequeueCommand.self, PurgeCommand.self,
            RepublishCommand.self, ClaimCommand.self,
        ]
    )

    /// Parses and runs; every failure of a run is one line, `handoff: error: …`, and exit status 1, never a trap.
    static func main() async {
        let command: any ParsableCommand
        do {
            command = try parseAsRoot()
        } catch {
            fail(error)
        }
        do {
            if var command = command as? any AsyncParsableCommand {
                try await command.run()
            } else {
                var command = command
                try command.run()
            }
        } catch {
            fail(error)
        }
    }

    /// Help and `--version` as ArgumentParser prints them; any other error as one line on standard error, with exit
    /// status 64 for a command line that cannot be used (ArgumentParser's) and 1 for everything else.
    static func fail(_ error: any Error) -> Never {
        let code = exitCode(for: error)
        if code == .success { exit(withError: error) }
        guard code == .validationFailure else {
            warn("handoff: error: \(oneLine(error))")
            Foundation.exit(1)
        }
        warn("handoff: error: \(oneLine(message(for: error))) (see 'handoff help')")
        Foundation.exit(code.rawValue)
    }

    /// An error's description on one line.
    static func oneLine(_ error: any Error) -> String {
        oneLine("\(error)")
    }

    static func oneLine(_ text: String) -> String {
        text.split(whereSeparator: \.isNewline).joined(separator: " ")
    }
}

/// A label given on the command line: the label itself (not its topic level), validated.
func parseLabel(_ text: String) throws -> HandoffLabel {
    do {
        return try HandoffLabel(text)
    } catch {
        throw ValidationError("\(error)")
    }
}
