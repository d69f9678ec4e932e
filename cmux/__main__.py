import sys

if len(sys.argv) >= 2 and sys.argv[1] == "hook":
    # Claude Code runs a hook on every tool call: skip click (~40-70 ms).
    from cmux.delivery.hooks import main as hook_main
    from cmux.umask import private_umask

    private_umask()  # before anything is written: the data root is private
    sys.exit(hook_main(sys.argv[2:]))

from cmux.cli import main

main()  # sets the private umask itself
