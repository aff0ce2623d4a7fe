from unclip.cli import main

main()
