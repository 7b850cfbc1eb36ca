#if canImport(Glibc)
import Glibc
#endif

// Built by Scripts/fuzz.sh (-DTLSGATE_LIBFUZZER, linked with libFuzzer's driver): libFuzzer
// runs the target named by TLSGATE_FUZZ_TARGET. The ordinary build: the corpus replayer.
#if TLSGATE_LIBFUZZER
exit(LibFuzzer.run())
#else
exit(FuzzReplay.run(CommandLine.arguments))
#endif
