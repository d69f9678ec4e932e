from cmux.cli import main

main()
