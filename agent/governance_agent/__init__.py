"""The reference agent of the fleet governance panel, for Debian and Ubuntu servers.

Standard library plus `requests`; no Django. See README.md in the source tree.
"""

__version__ = "1.0.0"
