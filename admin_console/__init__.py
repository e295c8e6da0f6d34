"""The platform admin console: admin sign-in, tenants, tenant runtimes (``runtimes``), and (later) broadcasts.

It is mounted into the control plane app by ``admin_console.app.mount`` and reuses the control plane's services,
models and templates; nothing here is reachable without a platform admin principal.
"""
