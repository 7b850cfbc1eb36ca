/// One value read from a TOML file, with the 1-based line it starts on.
///
/// Only the subset of TOML that policy and config files use is represented:
/// strings, integers (written in decimal, hex, octal or binary), booleans and arrays of those.
public struct TOMLValue: Sendable, Equatable {
    /// What the value is.
    public enum Kind: Sendable, Equatable {
        case string(String)
        case integer(Int64)
        case boolean(Bool)
        case array([TOMLValue])
    }

    public let kind: Kind
    /// The 1-based line the value starts on (for an array: the line of its `[`).
    public let line: Int

    public init(_ kind: Kind, line: Int) {
        self.kind = kind
        self.line = line
    }

    /// The string, if this value is one.
    public var stringValue: String? {
        if case .string(let value) = kind { return value }
        return nil
    }

    /// The integer, if this value is one.
    public var integerValue: Int64? {
        if case .integer(let value) = kind { return value }
        return nil
    }

    /// The boolean, if this value is one.
    public var booleanValue: Bool? {
        if case .boolean(let value) = kind { return value }
        return nil
    }

    /// The elements, if this value is an array.
    public var arrayValue: [TOMLValue]? {
        if case .array(let value) = kind { return value }
        return nil
    }

    /// "a string", "an integer", … for messages such as `port must be an integer, got a string`.
    public var typeDescription: String {
        switch kind {
        case .string: return "a string"
        case .integer: return "an integer"
        case .boolean: return "a boolean"
        case .array: return "an array"
        }
    }
}
