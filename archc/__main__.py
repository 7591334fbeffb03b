from archc._cli import main

raise SystemExit(main())
