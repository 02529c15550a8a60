"""pz-excel: Prostie Zvonki telephony for Excel workbooks."""

__version__ = "0.1.0"
