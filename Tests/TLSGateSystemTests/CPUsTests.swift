import TLSGateSystem
import XCTest

final class CPUsTests: XCTestCase {
    func testCPUList() {
        XCTAssertEqual(CPUs.parseCPUList("0-3\n"), 4)
        XCTAssertEqual(CPUs.parseCPUList("1"), 1)
        XCTAssertEqual(CPUs.parseCPUList("0-1,4,6-7"), 5)
        XCTAssertEqual(CPUs.parseCPUList(" 0 , 2 "), 2)
        XCTAssertNil(CPUs.parseCPUList(""))
        XCTAssertNil(CPUs.parseCPUList("\n"))
        XCTAssertNil(CPUs.parseCPUList("3-1"))
        XCTAssertNil(CPUs.parseCPUList("a-b"))
        XCTAssertNil(CPUs.parseCPUList("0-1-2"))
        XCTAssertNil(CPUs.parseCPUList("0,,1"))
    }

    func testCPUMax() {
        XCTAssertNil(CPUs.parseCPUMax("max 100000\n"))
        XCTAssertNil(CPUs.parseCPUMax("max"))
        XCTAssertEqual(CPUs.parseCPUMax("150000 100000\n"), 1.5)
        XCTAssertEqual(CPUs.parseCPUMax("50000 100000"), 0.5)
        XCTAssertEqual(CPUs.parseCPUMax("200000"), 2)
        XCTAssertNil(CPUs.parseCPUMax("0 100000"))
        XCTAssertNil(CPUs.parseCPUMax("100 0"))
        XCTAssertNil(CPUs.parseCPUMax("garbage"))
        XCTAssertNil(CPUs.parseCPUMax(""))
    }

    func testCFS() {
        XCTAssertNil(CPUs.parseCFS(quota: "-1\n", period: "100000\n"))
        XCTAssertEqual(CPUs.parseCFS(quota: "250000\n", period: "100000\n"), 2.5)
        XCTAssertNil(CPUs.parseCFS(quota: "x", period: "100000"))
    }

    func testCgroupPaths() {
        let v2 = CPUs.cgroupPaths("0::/system.slice/tlsgate.service\n")
        XCTAssertEqual(v2.unified, "/system.slice/tlsgate.service")
        XCTAssertNil(v2.cpu)
        let hybrid = CPUs.cgroupPaths("9:name=systemd:/\n4:cpu,cpuacct:/gw\n3:cpuset:/gwset\n0::/\n")
        XCTAssertEqual(hybrid.unified, "/")
        XCTAssertEqual(hybrid.cpu, "/gw")
        XCTAssertEqual(hybrid.cpuset, "/gwset")
    }

    func testUsableIsTheLeastLimit() {
        XCTAssertEqual(CPUs(machine: 8).usable, 8)
        XCTAssertEqual(CPUs(machine: 8, affinity: 1).usable, 1)
        XCTAssertEqual(CPUs(machine: 8, affinity: 4, cpuset: 2).usable, 2)
        XCTAssertEqual(CPUs(machine: 8, affinity: 8, quota: 1.5).usable, 2)  // a quota rounds up
        XCTAssertEqual(CPUs(machine: 8, quota: 0.2).usable, 1)
        XCTAssertEqual(CPUs(machine: 0).usable, 1)
        XCTAssertEqual(CPUs(machine: 8, affinity: 2, quota: 1.5).description, "2 of 8 (affinity 2, cpuset none, quota 1.50)")
        XCTAssertEqual(CPUs(machine: 2, affinity: 1).description, "1 of 2 (affinity 1, cpuset none, quota none)")
    }

    func testCurrentIsAtLeastOne() {
        let cpus = CPUs.current()
        XCTAssertGreaterThanOrEqual(cpus.usable, 1)
        XCTAssertLessThanOrEqual(cpus.usable, cpus.machine)
    }
}
