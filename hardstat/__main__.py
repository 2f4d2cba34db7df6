from hardstat.cli import main

main()
