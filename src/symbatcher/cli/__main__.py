from symbatcher.cli.main import main

raise SystemExit(main())
