from harness._main import main

raise SystemExit(main())
