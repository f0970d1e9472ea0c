"""The read side: what the admin, the REST API, Slack's `/slct status`, the health probes and the
metrics show. It reads the models (through `runtime.consistent_read` where a page shows a
process and its goroutines together) and never changes anything, except the metrics' counters.
"""
