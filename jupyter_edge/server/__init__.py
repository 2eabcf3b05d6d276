"""The Jupyter server extension: REST routes over the fleet, for the sidebar."""
