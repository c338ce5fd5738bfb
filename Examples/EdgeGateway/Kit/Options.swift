/// `--name value` command-line options, enough for the example's programs.
public struct Options: Sendable {
    private var values: [String: String] = [:]

    /// Parses `arguments` (without the program name).
    /// - Throws: ``OptionsError`` for an argument that is not `--name value`.
    public init(_ arguments: [String]) throws {
        var iterator = arguments.makeIterator()
        while let argument = iterator.next() {
            guard argument.hasPrefix("--"), let value = iterator.next() else {
                throw OptionsError(description: "expected --name value, found '\(argument)'")
            }
            values[String(argument.dropFirst(2))] = value
        }
    }

    /// The value of `--name`, or `fallback`.
    public func string(_ name: String, default fallback: String) -> String { values[name] ?? fallback }

    /// The value of `--name`, if given.
    public func string(_ name: String) -> String? { values[name] }

    /// The integer value of `--name`, or `fallback`.
    public func int(_ name: String, default fallback: Int) throws -> Int {
        guard let text = values[name] else { return fallback }
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
