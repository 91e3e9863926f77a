from symbatcher.cli import main

raise SystemExit(main())
