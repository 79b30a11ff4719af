#   The libFuzzer flags of each target, besides those of the run (time,
#   runs, memory limits). Sourced by scripts/fuzz.sh (CI) and
#   scripts/reliability-deep.sh; usage: fuzz_flags <target name>
fuzz_flags () {
    case "$1" in
        fuzz_stateful)
            #   A program is at most 48 operations of at most 26 bytes (a
            #   burst of six sends): the target reads nothing further.
            #   The entropic schedule of clang 14's libFuzzer searches a
            #   list for every feature of every input; with this target's
            #   ~20,000 features at a few hundred inputs a second, that was
            #   a quarter to a third of the time; the plain schedule reached
            #   the same coverage in the same time.
            echo "-max_len=1248 -entropic=0" ;;
        *)
            echo "-max_len=65536" ;;
    esac
}
