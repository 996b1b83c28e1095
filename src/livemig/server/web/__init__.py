"""The web console: server-rendered pages over the same store the API serves, updated live from
its watch stream (htmx and its SSE extension, served by livemig itself: no CDN, no build step)."""
