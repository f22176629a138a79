"""MES access: operator badges and PINs, Manage Page passwords and TOTP, sessions, CSRF,
security headers, and the `AuthBackend` the application asks who is calling.

Pure policy (pins, passwords, lockout, ratelimit, sessions, csrf) is separate from the
adapters that touch files, the database or the event socket (secrets, backend).
"""
