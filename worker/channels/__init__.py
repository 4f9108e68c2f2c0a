"""Delivery channels: ``base`` (contract, outcomes, HTTP classification), one module per kind, and
``registry`` (kinds from the ``crs_alert.channels`` entry points)."""
