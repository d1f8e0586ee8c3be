"""What vdi-connect says, in German.

vdi-connect speaks the language of the person's desktop when that is German,
and English otherwise. As with gettext, the English text is the key, so
broker/connect.py reads as it speaks; tests/unit/test_connect_texts.py checks
that every text there has its German here, with the same placeholders.
"""

from __future__ import annotations

GERMAN: dict[str, str] = {
    # Logging in
    "Password for {user}: ": "Passwort für {user}: ",
    "Code from your authenticator app: ": "Code aus Ihrer Authenticator-App: ",
    "Give the password and then the code on standard input.": (
        "Geben Sie auf der Standardeingabe erst das Passwort und dann den Code ein."
    ),
    "No terminal to ask for the password; use --password-stdin.": (
        "Kein Terminal, um nach dem Passwort zu fragen; verwenden Sie --password-stdin."
    ),
    "The code from your authenticator app has six digits (or use a recovery code).": (
        "Der Code aus Ihrer Authenticator-App hat sechs Ziffern (oder verwenden Sie einen "
        "Wiederherstellungscode)."
    ),
    "The broker's address begins with https:// (for example https://vdi.example.org), not {url}.": (
        "Die Adresse des Brokers beginnt mit https:// (zum Beispiel "
        "https://vdi.example.org), nicht {url}."
    ),
    "Logging in to {base} as {user} ...": "Anmeldung bei {base} als {user} ...",
    "Wrong user name, password or code.": "Benutzername, Passwort oder Code ist falsch.",
    "Your account needs an authenticator app first. Open the portal in a web browser, "
    "log in there and follow the steps: {portal}": (
        "Ihr Konto braucht zuerst eine Authenticator-App. Öffnen Sie das Portal im "
        "Webbrowser, melden Sie sich dort an und folgen Sie den Schritten: {portal}"
    ),
    "Your account is locked. Try again later or ask your IT department.": (
        "Ihr Konto ist gesperrt. Versuchen Sie es später erneut oder fragen Sie Ihre IT-Abteilung."
    ),
    "Too many login attempts; try again in {seconds} seconds.": (
        "Zu viele Anmeldeversuche; versuchen Sie es in {seconds} Sekunden erneut."
    ),
    "Too many login attempts; try again later.": (
        "Zu viele Anmeldeversuche; versuchen Sie es später erneut."
    ),
    "The login failed: {reason}": "Die Anmeldung ist fehlgeschlagen: {reason}",
    "The broker keeps logins for HTTPS only; use its https:// address instead of {base}.": (
        "Der Broker führt Anmeldungen nur über HTTPS; verwenden Sie statt {base} seine "
        "https://-Adresse."
    ),
    "Your login has expired; run vdi-connect again.": (
        "Ihre Anmeldung ist abgelaufen; starten Sie vdi-connect erneut."
    ),
    # Choosing a pool
    "There is no desktop pool you may use. Ask your IT department.": (
        "Es gibt keinen Desktop-Pool, den Sie nutzen dürfen. Fragen Sie Ihre IT-Abteilung."
    ),
    "You may use several pools; run again with --pool and a new code: {pools}": (
        "Sie dürfen mehrere Pools nutzen; starten Sie erneut mit --pool und einem neuen "
        "Code: {pools}"
    ),
    "You may use several pools:": "Sie dürfen mehrere Pools nutzen:",
    "Which pool (1-{count})? ": "Welcher Pool (1-{count})? ",
    "Answer with a number from 1 to {count} or a pool's name.": (
        "Antworten Sie mit einer Zahl von 1 bis {count} oder dem Namen eines Pools."
    ),
    "No pool chosen.": "Kein Pool gewählt.",
    # Getting a desktop
    "Asking for a desktop in pool {pool} ...": "Frage nach einem Desktop im Pool {pool} ...",
    "No desktop for you right now: {reason}": "Im Moment gibt es keinen Desktop für Sie: {reason}",
    "There is no pool {pool}.": "Es gibt keinen Pool {pool}.",
    "Pools you may use: {pools}": "Pools, die Sie nutzen dürfen: {pools}",
    "The broker answered {status}.": "Der Broker antwortete mit {status}.",
    "The broker answered {status}: {reason}": "Der Broker antwortete mit {status}: {reason}",
    "Your desktop is starting; this can take a minute ...": (
        "Ihr Desktop startet; das kann eine Minute dauern ..."
    ),
    "Your desktop did not start within {seconds} seconds.": (
        "Ihr Desktop ist nicht innerhalb von {seconds} Sekunden gestartet."
    ),
    "Your desktop is not ready (it may be restarting).": (
        "Ihr Desktop ist nicht bereit (vielleicht startet er gerade neu)."
    ),
    "Your desktop session has ended ({why}).": "Ihre Desktop-Sitzung ist beendet ({why}).",
    "you logged off": "Sie haben sich abgemeldet",
    "an administrator ended it": "ein Administrator hat sie beendet",
    "it stayed disconnected too long": "sie war zu lange getrennt",
    "it was idle too long": "sie war zu lange unbenutzt",
    "it reached the longest time allowed": "sie hat die längste erlaubte Dauer erreicht",
    "your agreed telework time is over": "Ihre vereinbarte Telearbeitszeit ist vorbei",
    "the desktop did not start in time": "der Desktop ist nicht rechtzeitig gestartet",
    "the server of your desktop failed": "der Server Ihres Desktops ist ausgefallen",
    "your desktop is no longer there": "Ihr Desktop ist nicht mehr vorhanden",
    "your account was locked": "Ihr Konto wurde gesperrt",
    "ended": "beendet",
    # The gateway and the tunnel
    "The broker did not say which host key its gateway has; not connecting.": (
        "Der Broker hat den Host-Schlüssel seines Gateways nicht genannt; keine Verbindung."
    ),
    "The gateway at {host}:{port} shows host key {seen}, but the broker said {expected}. "
    "Not connecting: someone may be intercepting the connection. Tell your IT department.": (
        "Das Gateway unter {host}:{port} zeigt den Host-Schlüssel {seen}, der Broker nannte "
        "aber {expected}. Keine Verbindung: Jemand könnte die Verbindung abfangen. Sagen "
        "Sie es Ihrer IT-Abteilung."
    ),
    "Gateway host key verified: {fingerprint}": (
        "Host-Schlüssel des Gateways geprüft: {fingerprint}"
    ),
    "Cannot reach the gateway at {host}:{port}: {problem}": (
        "Das Gateway unter {host}:{port} ist nicht erreichbar: {problem}"
    ),
    "The gateway did not let us in ({problem}); trying again in {seconds} s.": (
        "Das Gateway hat die Verbindung nicht angenommen ({problem}); neuer Versuch in {seconds} s."
    ),
    "The gateway refused the connection: {reason}": (
        "Das Gateway hat die Verbindung abgelehnt: {reason}"
    ),
    "Cannot listen on 127.0.0.1:{port}: {problem}": (
        "Port 127.0.0.1:{port} lässt sich nicht öffnen: {problem}"
    ),
    "another program uses it (is vdi-connect running already?); choose another port or "
    "leave out --local-port": (
        "ein anderes Programm nutzt ihn (läuft vdi-connect schon?); wählen Sie einen anderen "
        "Port oder lassen Sie --local-port weg"
    ),
    "Could not open a connection to the desktop: {problem}": (
        "Die Verbindung zum Desktop ließ sich nicht öffnen: {problem}"
    ),
    "Tunnel open: 127.0.0.1:{port} -> desktop {desktop} ({protocol}).": (
        "Tunnel offen: 127.0.0.1:{port} -> Desktop {desktop} ({protocol})."
    ),
    "No RDP client found. Connect your remote desktop client to 127.0.0.1:{port}, e.g.:\n"
    "  xfreerdp /v:127.0.0.1:{port}      (Linux)\n"
    "  mstsc /v:127.0.0.1:{port}         (Windows)": (
        "Kein RDP-Client gefunden. Verbinden Sie Ihren Remotedesktop-Client mit "
        "127.0.0.1:{port}, etwa so:\n"
        "  xfreerdp /v:127.0.0.1:{port}      (Linux)\n"
        "  mstsc /v:127.0.0.1:{port}         (Windows)"
    ),
    "No VNC viewer found. Point your VNC viewer at 127.0.0.1 port {port}, e.g.:\n"
    "  vncviewer 127.0.0.1::{port}": (
        "Kein VNC-Viewer gefunden. Verbinden Sie Ihren VNC-Viewer mit 127.0.0.1, Port "
        "{port}, etwa so:\n"
        "  vncviewer 127.0.0.1::{port}"
    ),
    "Connect your desktop client: {command}": "Verbinden Sie Ihren Desktop-Client: {command}",
    "Starting {command} ...": "Starte {command} ...",
    "Press Ctrl-C to disconnect.": "Strg-C trennt die Verbindung.",
    "The desktop client has closed; disconnecting.": (
        "Der Desktop-Client wurde geschlossen; die Verbindung wird getrennt."
    ),
    "The connection to the gateway was lost; reconnecting ...": (
        "Die Verbindung zum Gateway ist abgerissen; verbinde neu ..."
    ),
    "the broker cannot check tickets right now": "der Broker kann Tickets gerade nicht prüfen",
    "your desktop does not answer": "Ihr Desktop antwortet nicht",
    "your desktop's server no longer reports it; run vdi-connect again later": (
        "der Server Ihres Desktops meldet ihn nicht mehr; starten Sie vdi-connect später erneut"
    ),
    "your session has ended": "Ihre Sitzung ist beendet",
    "the broker cannot open your tunnel right now": (
        "der Broker kann Ihren Tunnel gerade nicht öffnen"
    ),
    "the connection to the gateway is not back yet": (
        "die Verbindung zum Gateway steht noch nicht wieder"
    ),
    "the broker did not answer in time": "der Broker hat nicht rechtzeitig geantwortet",
    "the broker cannot be reached": "der Broker ist nicht erreichbar",
    "the server's name is not known": "der Name des Servers ist nicht bekannt",
    "nothing answers at that address": "unter dieser Adresse antwortet nichts",
    "the network does not reach that address": "das Netzwerk erreicht diese Adresse nicht",
    "the server does not answer": "der Server antwortet nicht",
    "Reconnecting failed ({problem}); next try in {seconds} s.": (
        "Neu verbinden fehlgeschlagen ({problem}); nächster Versuch in {seconds} s."
    ),
    "Reconnected. Your desktop client can connect again.": (
        "Wieder verbunden. Ihr Desktop-Client kann sich erneut verbinden."
    ),
    "Disconnecting ... your desktop keeps running; run vdi-connect again to return.": (
        "Die Verbindung wird getrennt ... Ihr Desktop läuft weiter; mit vdi-connect kommen "
        "Sie zurück."
    ),
    "Disconnected.": "Verbindung getrennt.",
    "Cancelled.": "Abgebrochen.",
    "no answer within {seconds} s": "keine Antwort innerhalb von {seconds} s",
    "no answer to the login within {seconds} s": (
        "keine Antwort auf die Anmeldung innerhalb von {seconds} s"
    ),
    "--code takes the six-digit code only. Enter a recovery code when asked, or on "
    "standard input with --password-stdin: on the command line others could read it.": (
        "--code nimmt nur den sechsstelligen Code. Geben Sie einen Wiederherstellungscode "
        "ein, wenn danach gefragt wird, oder über die Standardeingabe mit --password-stdin: "
        "auf der Befehlszeile könnten andere ihn lesen."
    ),
    "Cannot reach the broker at {url}: {problem}": (
        "Der Broker unter {url} ist nicht erreichbar: {problem}"
    ),
}
