"""What the gateway tells an SSH client when it refuses or cannot do something.

In English, as SSH clients print them (OpenSSH shows them as they are).
vdi-connect imports this module, which imports nothing, to say the ones its
users meet in their own language (broker.connect.channel_problem).
"""

from __future__ import annotations

NO_SESSIONS = "This gateway only forwards to your desktop: no shell, commands or file transfer."
ONLY_YOUR_DESKTOP = "This gateway only forwards to your desktop."
SESSION_ENDED = "Your session has ended."
DESKTOP_GONE = "Your desktop's host no longer reports it; ask for a desktop again later."
DESKTOP_SILENT = "Your desktop does not answer."
CANNOT_OPEN = "The broker cannot open your tunnel right now."
CLOSED_WHILE_OPENING = "The connection closed while it was opened."
# Shown before the password prompt comes again (an SSH login banner): OpenSSH
# would only say "Permission denied". The same words for every refused ticket, so
# they tell a guesser nothing.
TICKET_REFUSED = (
    "This ticket does not open your desktop: it has been used, has run out, or its "
    "session has ended. Ask for your desktop again (portal or vdi-connect) to get a new one."
)
# Sent as the reason of the disconnect (OpenSSH prints it; vdi-connect says it in
# the user's language and tries again).
CANNOT_CHECK = "The broker cannot check tickets right now; try again in a minute."
