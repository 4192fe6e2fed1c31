"""Pure SQL transforms, in data-flow order: raw pages -> events -> costs."""
