"""One module per tab: `build(ctx)` lays it out and wires its buttons to `core`."""
