#   The libFuzzer flags of each target, besides those of the run (time,
#   runs, memory limits). Sourced by scripts/fuzz.sh (CI) and
#   scripts/reliability-deep.sh; usage: fuzz_flags <target name>
fuzz_flags () {
    case "$1" in
        fuzz_stateful)
            #   A program is at most 48 operations of at most 26 bytes (a
            #   burst of six sends): the target reads nothing further
            echo "-max_len=1248" ;;
        *)
            echo "-max_len=65536" ;;
    esac
}
