import Testing

@testable import HandoffClaims

@Suite("Ordering markers shared by the callers that arrive together (no broker)")
struct OrderingMarkersTests {
    @Test("the first caller publishes; callers arriving meanwhile share one next marker, published when the first is back")
    func sharedMarker() {
        var markers = OrderingMarkers<Int>()
        guard case .publish(let first) = markers.request(1) else {
            Issue.record("the first caller publishes")
            return
        }
        guard case .armFlush = markers.request(2), case .wait = markers.request(3) else {
            Issue.record("the callers arriving meanwhile wait for the next marker")
            return
        }
        let (answered, next) = markers.done(first)
        #expect(answered == [1])
        #expect(next != nil && next != first)
        #expect(markers.done(next ?? "").waiters == [2, 3])
    }

    @Test("a flush sends the next marker before the one in flight is back; a late echo answers only its own callers")
    func flush() {
        var markers = OrderingMarkers<Int>()
        guard case .publish(let first) = markers.request(1) else {
            Issue.record("the first caller publishes")
            return
        }
        _ = markers.request(2)
        let next = markers.flush()
        #expect(next != nil)
        #expect(markers.flush() == nil, "nobody else queued")
        let late = markers.done(first)
        #expect(late.waiters == [1] && late.next == nil)
        #expect(markers.done(next ?? "").waiters == [2])
    }

    @Test("shutting down returns every caller still waiting; later callers are refused")
    func shutdown() {
        var markers = OrderingMarkers<Int>()
        _ = markers.request(1)
        _ = markers.request(2)
        #expect(markers.shutDown().sorted() == [1, 2])
        guard case .shutDown = markers.request(3) else {
            Issue.record("a caller after the shutdown is refused")
            return
        }
    }
}
