"""The management dashboard: one self-contained HTML file from the published scoring runs."""
