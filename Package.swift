// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "tlsgate",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "tlsgate", targets: ["tlsgate"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    ],
    targets: [
        // The system OpenSSL 3 (libssl-dev), found through pkg-config.
        .systemLibrary(
            name: "COpenSSL",
            pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]
        ),
        // Functions wrapping OpenSSL macros and the custom BIO; every symbol prefixed tg_ssl_.
        .target(
            name: "CTLSGateOpenSSL",
            dependencies: ["COpenSSL"]
        ),
        // libseccomp (libseccomp-dev), found through pkg-config: the workers' syscall filter.
        .systemLibrary(
            name: "CSeccomp",
            pkgConfig: "libseccomp",
            providers: [.apt(["libseccomp-dev"])]
        ),
        // Linux specifics: SO_ORIGINAL_DST, prctl, libcap, seccomp; every symbol prefixed tg_linux_.
        .target(
            name: "CTLSGateLinux",
            dependencies: ["CSeccomp"],
            linkerSettings: [.linkedLibrary("cap")]
        ),
        // Pure Swift: TOML reading, policy and config model, validation with exact messages.
        .target(name: "TLSGatePolicy"),
        // The only Swift importer of OpenSSL: contexts, connections, the NIO TLS client handler.
        .target(
            name: "TLSGateTLS",
            dependencies: [
                // The policy model's TLS words (versions, OCSP modes): one type each, no copy.
                "TLSGatePolicy",
                "CTLSGateOpenSSL", "COpenSSL",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]
        ),
        // The only Swift importer of CTLSGateLinux: original destination, capabilities, prctl.
        .target(
            name: "TLSGateSystem",
            dependencies: [
                "CTLSGateLinux",
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        // The relay core on SwiftNIO: the worker's server, per-connection state machines, logging.
        .target(
            name: "TLSGateRelay",
            dependencies: [
                "TLSGatePolicy", "TLSGateTLS", "TLSGateSystem",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // nftables: the gateway's own table, rendered from a plan and applied atomically.
        .target(name: "TLSGateFirewall", dependencies: ["TLSGateSystem"]),
        // The supervisor: sockets, workers, signals, the firewall table.
        .target(
            name: "TLSGateSupervisor",
            dependencies: [
                "TLSGatePolicy", "TLSGateFirewall", "TLSGateSystem",
                .product(name: "Logging", package: "swift-log"),
                // The metrics API only; the executable bootstraps the Prometheus exporter.
                .product(name: "CoreMetrics", package: "swift-metrics"),
                // The admin endpoint (/metrics, /healthz).
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        .executableTarget(
            name: "tlsgate",
            dependencies: [
                "TLSGatePolicy", "TLSGateRelay", "TLSGateTLS", "TLSGateSystem", "TLSGateFirewall", "TLSGateSupervisor",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            // Linked by lld (the toolchain's own): relative relocations packed (DT_RELR,
            // glibc 2.36), and no dynamic symbol table of the executable's ~13,900 Swift
            // symbols, which swiftc's static-stdlib arguments export and nothing looks up.
            // Both tables stayed resident: 1.4 MiB at rest (README, "Where memory at rest went").
            linkerSettings: [
                .unsafeFlags([
                    "-use-ld=lld", "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs", "-Xlinker", "--no-export-dynamic",
                ])
            ]
        ),
        // Fuzz targets (TOML reader + policy/config decoders, HTTP Host sniffer, STARTTLS
        // replies): a corpus replayer in the ordinary build, libFuzzer under Scripts/fuzz.sh.
        .executableTarget(name: "tlsgate-fuzz", dependencies: ["TLSGatePolicy", "TLSGateRelay"]),
        .testTarget(name: "TLSGatePolicyTests", dependencies: ["TLSGatePolicy"], exclude: ["Fixtures"]),
        .testTarget(name: "TLSGateFirewallTests", dependencies: ["TLSGateFirewall"]),
        // The worker table with a mock clock and no process; the control channel's messages.
        .testTarget(
            name: "TLSGateSupervisorTests",
            dependencies: [
                "TLSGateSupervisor", "TLSGatePolicy",
                // The metrics tests read what a Prometheus registry of their own exports.
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        // Spawning with explicit descriptors (real processes: /bin/sh).
        .testTarget(name: "TLSGateSystemTests", dependencies: ["TLSGateSystem"]),
        // The executable's own pieces (the log handler), through @testable import.
        .testTarget(
            name: "tlsgateTests",
            dependencies: ["tlsgate", .product(name: "Logging", package: "swift-log")]
        ),
        .testTarget(
            name: "TLSGateTLSTests",
            dependencies: [
                "TLSGateTLS", "TLSGatePolicy",
                // The tests play the server side with OpenSSL directly.
                "COpenSSL", "CTLSGateOpenSSL",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "TLSGateRelayTests",
            dependencies: [
                "TLSGateRelay", "TLSGatePolicy", "TLSGateTLS",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
