"""A module that exists only in the probe layer: importing it proves the layer is on the import path."""

VALUE = "from-the-probe-layer"
