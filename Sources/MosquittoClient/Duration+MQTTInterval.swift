extension Duration {
    /// This duration as an MQTT interval (Message Expiry, Session Expiry, Will Delay: whole seconds in 32 bits): rounded
    /// up to the next second, so that a positive duration never becomes 0 (which means "none" or "at once" on the wire),
    /// and clamped to `0...UInt32.max`.
    package var mqttSeconds: UInt32 {
        let (seconds, attoseconds) = components
        guard seconds >= 0 else { return 0 }
        let whole = attoseconds > 0 ? seconds + 1 : seconds
        return whole >= Int64(UInt32.max) ? UInt32.max : UInt32(whole)
    }
}
