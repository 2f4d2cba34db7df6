import sys

try:
    from hardstat.cli import main
except KeyboardInterrupt:  # Ctrl-C while the command line is still loading
    print("Error: interrupted (Ctrl-C)", file=sys.stderr)
    sys.exit(130)

main()
