from cyberevents.cli import main

raise SystemExit(main())
