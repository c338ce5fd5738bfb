/// `--name value` command-line options and `--name` flags, enough for the example's programs.
public struct Options: Sendable {
    private var values: [String: String] = [:]
    private var flags: Set<String> = []

    /// Parses `arguments` (without the program name): `--name value`, or `--name` alone (a flag) when it is the
    /// last argument or the next one starts with `--`.
    /// - Throws: ``OptionsError`` for an argument that does not start with `--`.
    public init(_ arguments: [String]) throws {
        var index = arguments.startIndex
        while index < arguments.endIndex {
            let argument = arguments[index]
            guard argument.hasPrefix("--"), argument.count > 2 else {
                throw OptionsError(description: "expected --name value or --flag, found '\(argument)'")
            }
            let name = String(argument.dropFirst(2))
            let next = arguments.index(after: index)
            if next < arguments.endIndex, !arguments[next].hasPrefix("--") {
                values[name] = arguments[next]
                index = arguments.index(after: next)
            } else {
                flags.insert(name)
                index = next
            }
        }
    }

    /// Whether the flag `--name` was given.
    public func flag(_ name: String) -> Bool { flags.contains(name) }

    /// The value of `--name`, or `fallback`.
    public func string(_ name: String, default fallback: String) -> String { values[name] ?? fallback }

    /// The value of `--name`, if given.
    public func string(_ name: String) -> String? { values[name] }

    /// The integer value of `--name`, or `fallback`.
    public func int(_ name: String, default fallback: Int) throws -> Int {
        guard let text = values[name] else {
            if flag(name) { throw OptionsError(description: "--\(name) needs a number") }
            return fallback
        }
        guard let value = Int(text) else { throw OptionsError(description: "--\(name) needs a number, not '\(text)'") }
        return value
    }
}

/// A command line the example's programs cannot read.
public struct OptionsError: Error, CustomStringConvertible {
    /// What is wrong.
    public var description: String

    /// An error saying what is wrong.
    public init(description: String) { self.description = description }
}
