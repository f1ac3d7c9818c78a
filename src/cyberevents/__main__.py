try:
    from cyberevents.cli import main
except KeyboardInterrupt:  # Ctrl-C while the libraries load: the same exit as at any later moment
    raise SystemExit(130) from None

raise SystemExit(main())
