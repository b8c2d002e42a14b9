"""The time-manager operator: ReminderChannel and TimeServiceTenant, reconciled.

A kopf operator. It validates each ReminderChannel against the Secrets it
names and says in the channel's `Ready` condition what is wrong; registers
each TimeServiceTenant in MongoDB with its quotas and an API key whose only
copy is a Secret of ours; purges a tenant's expired data and, when the
resource goes, deactivates or deletes the tenant as its policy says; and
publishes the routes from tenants to ready channels for the reminder worker.

It must not know how a reminder is sent (the worker's), nor the HTTP API,
nor how a task document is written beyond removing whole tenants of them.
"""
