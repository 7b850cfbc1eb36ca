import Testing
import TLSGatePolicy

@Suite struct IPNetworkFamilyTests {
    @Test func mappedNetworksAreWrittenAsIPv4ForRules() {
        #expect(IPNetwork("::ffff:192.0.2.128/121")?.familyDescription == "192.0.2.128/25")
        #expect(IPNetwork("192.0.2.0/24")?.familyDescription == "192.0.2.0/24")
        #expect(IPNetwork("2001:db8::/32")?.familyDescription == "2001:db8::/32")
    }
}
