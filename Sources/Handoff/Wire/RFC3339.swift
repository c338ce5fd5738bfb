import struct Foundation.Date

/// The timestamp format of the wire header: RFC 3339, UTC, exactly three fractional digits
/// (`2026-11-25T06:00:00.123Z`), written and read by hand because it sits on the hot path. Also the format of the
/// other timestamps of the protocol (a dead letter's `handoff-dead-at`).
package enum RFC3339 {
    static let millisecondsPerDay: Int64 = 86_400_000
    /// 0000-01-01T00:00:00.000Z, in milliseconds since 1970.
    static let minimumMilliseconds = Int64(daysFromCivil(year: 0, month: 1, day: 1)) * millisecondsPerDay
    /// 9999-12-31T23:59:59.999Z, in milliseconds since 1970.
    static let maximumMilliseconds = Int64(daysFromCivil(year: 10_000, month: 1, day: 1)) * millisecondsPerDay - 1
    /// 2001-01-01T00:00:00Z (`Date`'s reference date), in milliseconds since 1970.
    ///
    /// `Date` stores seconds since 2001 as a `Double`, so all arithmetic here is done relative to 2001 to make
    /// whole-millisecond dates round-trip exactly.
    static let referenceMilliseconds: Int64 = 978_307_200_000

    /// `value` truncated to whole milliseconds and clamped to the years 0000–9999, as a date that
    /// ``format(_:)`` and ``parse(_:)`` round-trip exactly.
    static func truncated(_ value: Date) -> Date {
        date(fromMilliseconds: milliseconds(truncating: value))
    }

    /// Whole milliseconds since 1970, rounded down, clamped to the years 0000–9999. A date less than a
    /// microsecond before a whole millisecond counts as that millisecond, so that dates made from decimal
    /// literals (`Date(timeIntervalSince1970: 1.123)`, stored in binary as 1.12299999…) keep their digits.
    static func milliseconds(truncating date: Date) -> Int64 {
        let seconds = date.timeIntervalSinceReferenceDate
        let lower = Double(minimumMilliseconds - referenceMilliseconds) / 1000
        let upper = Double(maximumMilliseconds - referenceMilliseconds) / 1000
        guard seconds.isFinite else { return seconds > 0 ? maximumMilliseconds : minimumMilliseconds }
        if seconds >= upper { return maximumMilliseconds }
        if seconds <= lower { return minimumMilliseconds }
        let nearest = (seconds * 1000).rounded()
        if nearest / 1000 == seconds {
            // Exactly a date made by `date(fromMilliseconds:)`: keep it, at any magnitude.
            return Int64(nearest) + referenceMilliseconds
        }
        return Int64((seconds * 1000 + 0.001).rounded(.down)) + referenceMilliseconds
    }

    /// Whole milliseconds since 1970, rounded to the nearest, clamped to the years 0000–9999.
    static func milliseconds(rounding date: Date) -> Int64 {
        let seconds = date.timeIntervalSinceReferenceDate
        guard seconds.isFinite, abs(seconds) < 1e15 else {
            return seconds > 0 ? maximumMilliseconds : minimumMilliseconds
        }
        let milliseconds = Int64((seconds * 1000).rounded()) + referenceMilliseconds
        return min(max(milliseconds, minimumMilliseconds), maximumMilliseconds)
    }

    static func date(fromMilliseconds milliseconds: Int64) -> Date {
        Date(timeIntervalSinceReferenceDate: Double(milliseconds - referenceMilliseconds) / 1000)
    }

    /// Formats a date (rounded to the nearest millisecond, clamped to the years 0000–9999).
    package static func format(_ date: Date) -> String {
        let milliseconds = milliseconds(rounding: date)
        var days = milliseconds / millisecondsPerDay
        var inDay = milliseconds % millisecondsPerDay
        if inDay < 0 {
            inDay += millisecondsPerDay
            days -= 1
        }
        let (year, month, day) = civil(fromDays: Int(days))
        let ms = Int(inDay)
        var bytes = [UInt8](repeating: 0, count: 24)
        func put(_ value: Int, _ at: Int, _ width: Int) {
            var value = value
            for index in stride(from: at + width - 1, through: at, by: -1) {
                bytes[index] = UInt8(ascii: "0") + UInt8(value % 10)
                value /= 10
            }
        }
        put(year, 0, 4)
        bytes[4] = UInt8(ascii: "-")
        put(month, 5, 2)
        bytes[7] = UInt8(ascii: "-")
        put(day, 8, 2)
        bytes[10] = UInt8(ascii: "T")
        put(ms / 3_600_000, 11, 2)
        bytes[13] = UInt8(ascii: ":")
        put(ms / 60_000 % 60, 14, 2)
        bytes[16] = UInt8(ascii: ":")
        put(ms / 1000 % 60, 17, 2)
        bytes[19] = UInt8(ascii: ".")
        put(ms % 1000, 20, 3)
        bytes[23] = UInt8(ascii: "Z")
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Parses an RFC 3339 date-time: `YYYY-MM-DDTHH:MM:SS`, an optional fraction of any length (truncated to
    /// milliseconds), and `Z` or a `±HH:MM` offset. Writers must produce the exact format of ``format(_:)``;
    /// readers accept the rest of RFC 3339 to be lenient with other implementations.
    package static func parse(_ string: String) -> Date? {
        var utf8 = Array(string.utf8)
        guard utf8.count >= 20 else { return nil }
        func digits(_ at: Int, _ width: Int) -> Int? {
            var value = 0
            for index in at..<(at + width) {
                let byte = utf8[index]
                guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
            }
            return value
        }
        for index in utf8.indices { if utf8[index] >= UInt8(ascii: "a"), utf8[index] <= UInt8(ascii: "z") { utf8[index] -= 32 } }
        guard let year = digits(0, 4), utf8[4] == UInt8(ascii: "-"), let month = digits(5, 2),
            utf8[7] == UInt8(ascii: "-"), let day = digits(8, 2), utf8[10] == UInt8(ascii: "T"),
            let hour = digits(11, 2), utf8[13] == UInt8(ascii: ":"), let minute = digits(14, 2),
            utf8[16] == UInt8(ascii: ":"), let second = digits(17, 2)
        else { return nil }
        guard (1...12).contains(month), (1...daysInMonth(year: year, month: month)).contains(day),
            hour <= 23, minute <= 59, second <= 60
        else { return nil }
        var index = 19
        var fraction = 0
        if utf8[index] == UInt8(ascii: ".") {
            index += 1
            var count = 0
            while index < utf8.count, utf8[index] >= UInt8(ascii: "0"), utf8[index] <= UInt8(ascii: "9") {
                if count < 3 { fraction = fraction * 10 + Int(utf8[index] - UInt8(ascii: "0")) }
                count += 1
                index += 1
            }
            guard count > 0 else { return nil }
            for _ in count..<max(count, 3) { fraction *= 10 }
        }
        guard index < utf8.count else { return nil }
        var offsetMinutes = 0
        if utf8[index] == UInt8(ascii: "Z") {
            index += 1
        } else if utf8[index] == UInt8(ascii: "+") || utf8[index] == UInt8(ascii: "-") {
            guard utf8.count == index + 6, let offsetHours = digits(index + 1, 2),
                utf8[index + 3] == UInt8(ascii: ":"), let offsetMins = digits(index + 4, 2),
                offsetHours <= 23, offsetMins <= 59
            else { return nil }
            offsetMinutes = (offsetHours * 60 + offsetMins) * (utf8[index] == UInt8(ascii: "-") ? -1 : 1)
            index += 6
        } else {
            return nil
        }
        guard index == utf8.count else { return nil }
        let days = Int64(daysFromCivil(year: year, month: month, day: day))
        let seconds = Int64(hour * 3600 + (minute - offsetMinutes) * 60 + second)
        let milliseconds = days * millisecondsPerDay + seconds * 1000 + Int64(fraction)
        return date(fromMilliseconds: milliseconds)
    }

    static func daysInMonth(year: Int, month: Int) -> Int {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
    static func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    /// The proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`).
    static func civil(fromDays days: Int) -> (year: Int, month: Int, day: Int) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }
}
