"""Template tags of appsync_events."""
