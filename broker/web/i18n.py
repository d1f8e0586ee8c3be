"""Every text of the portal, in German (the default) and English.

One catalogue, so a translator finds all texts in one place and a test can check
that both languages have the same keys and placeholders. Texts are plain (no
markup); templates escape them. Refusals come from the broker in the page's
language already (broker.placement.refusals); the broker's other error messages
are English, so `SERVICE_ERRORS_DE` gives German pages a German text per code, and
`SERVICE_ERRORS_EN` English pages one where the broker's words fit the API only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from broker.errors import VdiError
from broker.i18n import SUPPORTED
from broker.policy.schedule import DAYS, DAYS_DE, DAYS_EN


def _day_names(names: tuple[str, ...]) -> dict[str, str]:
    """The catalogue's day names ("day.mon"), as refusals name days too
    (broker.policy.schedule): one list of names per language."""
    return {f"day.{code}": name for code, name in zip(DAYS, names, strict=True)}


DE: dict[str, str] = {
    "app.name": "Virtueller Arbeitsplatz",
    "skip": "Zum Inhalt springen",
    "nav.label": "Hauptnavigation",
    "nav.desktops": "Meine Desktops",
    "nav.hosts": "Hosts",
    "nav.pools": "Pools",
    "nav.sessions": "Sitzungen",
    "nav.users": "Benutzer",
    "nav.policies": "Richtlinien",
    "nav.audit": "Protokoll",
    "lang.label": "Sprache",
    "lang.other": "English",
    "signed_in_as": "Angemeldet als {name}",
    "logout": "Abmelden",
    "notice.ok": "Hinweis",
    "notice.error": "Fehler",
    "never": "nie",
    "none": "–",
    "yes": "ja",
    "no": "nein",
    "actions": "Aktionen",
    "save": "Speichern",
    "remove": "Entfernen",
    "age.s": "vor {n} s",
    "age.min": "vor {n} min",
    "age.h": "vor {n} h",
    "age.d": "vor {n} Tagen",
    "time.format": "%d.%m.%Y %H:%M",
    "time.zone": "Zeiten in {zone}.",
    # Logging in
    "login.title": "Anmeldung",
    "login.intro": "Melden Sie sich mit Benutzername, Passwort und dem Code aus Ihrer "
    "Authenticator-App an.",
    "login.username": "Benutzername",
    "login.password": "Passwort",
    "login.code": "Code aus der Authenticator-App",
    "login.code_hint": "6 Ziffern. Bei der ersten Anmeldung lassen Sie das Feld leer: "
    "Sie richten die App dann ein.",
    "login.recovery_toggle": "Kein Telefon zur Hand? Wiederherstellungscode verwenden",
    "login.recovery": "Wiederherstellungscode",
    "login.recovery_hint": "Ein Code aus der Liste, die Sie bei der Einrichtung erhalten "
    "haben, etwa abcde-fghjk. Jeder Code gilt nur einmal.",
    "login.submit": "Anmelden",
    # The same notice for every session that ended without this browser logging
    # out: inactivity, or an end elsewhere (logout in another tab, locked by IT,
    # authenticator reset); the cookie does not say which.
    "login.expired": "Ihre Sitzung ist beendet: nach längerer Inaktivität oder weil sie "
    "anderswo beendet wurde. Bitte melden Sie sich erneut an.",
    "login.logged_out": "Sie haben sich abgemeldet.",
    "login.missing": "Bitte geben Sie Benutzername und Passwort ein.",
    "login.bad_code": "Der Code aus der App hat 6 Ziffern.",
    "login.bad_recovery": "Ein Wiederherstellungscode sieht so aus: abcde-fghjk.",
    "login.both": "Bitte geben Sie entweder den Code aus der App oder einen "
    "Wiederherstellungscode ein, nicht beides.",
    "csrf.title": "Formular abgelaufen",
    "csrf.text": "Das Formular ist abgelaufen oder unvollständig und wurde nicht "
    "verarbeitet. Bitte laden Sie die Seite neu und versuchen Sie es noch einmal.",
    # Enrolment
    "enrol.title": "Authenticator-App einrichten",
    "enrol.intro": "Ihr Passwort war richtig. Zum Schutz Ihres Kontos brauchen Sie "
    "zusätzlich eine Authenticator-App auf Ihrem Telefon, wie beim Online-Banking.",
    "enrol.step1": "1. Scannen Sie diesen QR-Code mit der Authenticator-App.",
    "enrol.qr_label": "QR-Code für die Authenticator-App",
    "enrol.manual": "Scannen klappt nicht? Geben Sie diesen Schlüssel in der App von Hand ein:",
    "enrol.manual_details": "Zeitbasiert (TOTP), 6 Ziffern, alle 30 Sekunden ein neuer Code.",
    "enrol.step2": "2. Geben Sie den Code ein, den die App jetzt anzeigt.",
    "enrol.code": "Code aus der App (6 Ziffern)",
    "enrol.submit": "Bestätigen",
    "enrol.renew": "Neuen QR-Code erzeugen",
    "enrol.renew_hint": "Der bisherige Schlüssel gilt dann nicht mehr.",
    "enrol.renewed": "Ein neuer Schlüssel wurde erzeugt. Bitte scannen Sie den neuen QR-Code.",
    "enrol.expired": "Die Einrichtung ist abgelaufen. Bitte melden Sie sich erneut an.",
    "enrol.too_many_codes": "Zu viele falsche Codes. Prüfen Sie, ob die Uhrzeit Ihres "
    "Telefons stimmt, und melden Sie sich erneut an.",
    "enrol.cancel": "Einrichtung abbrechen",
    "enrol.cancel_hint": "Sie können sie bei der nächsten Anmeldung nachholen.",
    "enrol.cancelled": "Die Einrichtung wurde abgebrochen. Melden Sie sich erneut an, "
    "wenn Sie sie fortsetzen möchten.",
    "codes.title": "Ihre Wiederherstellungscodes",
    "codes.intro": "Die App ist eingerichtet. Bewahren Sie diese zehn Codes sicher auf, "
    "etwa ausgedruckt. Jeder Code ersetzt einmal den Code der App, wenn Sie Ihr Telefon "
    "nicht zur Hand haben.",
    "codes.once": "Diese Codes werden nur jetzt angezeigt.",
    "codes.list": "Wiederherstellungscodes",
    "codes.next": "Melden Sie sich jetzt mit dem nächsten Code aus der App an.",
    "codes.continue": "Weiter zur Anmeldung",
    # My desktops
    "desktops.title": "Meine Desktops",
    "desktops.pools": "Desktop-Pools, die Sie nutzen können",
    "desktops.no_pools": "Für Sie ist derzeit kein Desktop-Pool freigeschaltet. Bitte "
    "wenden Sie sich an die IT.",
    "desktops.free": "{free} von {capacity} frei",
    # "0 von 0 frei" reads like a fault of the page; this says what it means.
    "desktops.none_usable": "Zurzeit ist hier kein Desktop verfügbar.",
    "desktops.field": "Außendienst",
    "desktops.connect": "Desktop starten",
    "desktops.reconnect": "Verbindungsdaten",
    "desktops.sessions": "Ihre offenen Sitzungen",
    "desktops.no_sessions": "Sie haben keine offene Sitzung.",
    "col.pool": "Pool",
    "col.state": "Zustand",
    "col.desktop": "Desktop",
    "col.since": "Seit",
    "col.user": "Benutzer",
    "col.department": "Abteilung",
    "state.pending": "wird gestartet",
    "state.active": "aktiv",
    "state.disconnected": "getrennt",
    "state.ended": "beendet",
    "mode.home": "Telearbeit",
    "mode.field": "Außendienst",
    "session.end": "Sitzung beenden",
    "session.ended": "Die Sitzung im Pool {pool} ist beendet.",
    # Asked (portal.js) before an action that loses something is sent.
    "confirm.end_session": "Die Sitzung im Pool {pool} beenden? Nicht gespeicherte Arbeit "
    "auf dem Desktop kann verloren gehen.",
    "confirm.end_other": "Die Sitzung von {user} im Pool {pool} beenden? Nicht gespeicherte "
    "Arbeit auf dem Desktop kann verloren gehen.",
    "confirm.lock": "{user} sperren? {user} wird überall abgemeldet, offene Desktop-Sitzungen "
    "enden.",
    "confirm.reset_totp": "Den Authenticator von {user} zurücksetzen? App und "
    "Wiederherstellungscodes gelten dann nicht mehr; {user} wird abgemeldet.",
    "confirm.remove_cap": "Die Obergrenze von {department} entfernen?",
    "confirm.remove_schedule": "Das Zeitfenster {window} für {subject} entfernen?",
    "confirm.remove_class": "{name} als vorrangigen Aufgabenbereich entfernen? Seine "
    "Beschäftigten erhalten dann keinen Desktop mehr aus der Reserve.",
    # Connect
    "connect.title": "Verbinden mit Pool {pool}",
    "connect.pending": "Ihr Desktop wird gestartet. Diese Seite aktualisiert sich von "
    "selbst, sobald er bereit ist.",
    "connect.reload": "Seite neu laden",
    "connect.ready": "Ihr Desktop {desktop} ist bereit.",
    "connect.way1": "Am einfachsten: mit vdi-connect",
    "connect.way1_text": "Führen Sie diesen Befehl aus. Er fragt nach Passwort und Code, "
    "öffnet den Tunnel und startet das Programm für den Desktop.",
    "connect.way2": "Ohne vdi-connect: SSH-Tunnel und Remotedesktop",
    "connect.way2_text": "Öffnen Sie den Tunnel mit diesem Befehl. Wenn SSH nach dem "
    "Passwort fragt, geben Sie das Einmal-Ticket ein.",
    "connect.ticket": "Einmal-Ticket",
    "connect.ticket_hint": "Gilt einmal und nur {seconds} Sekunden. Laden Sie die Seite "
    "neu, um ein neues zu erhalten.",
    "connect.fingerprint": "Fingerabdruck des Gateways (beim ersten Verbinden mit der "
    "Anzeige von SSH vergleichen):",
    "connect.rdp": "Öffnen Sie danach diese Datei mit Remotedesktop:",
    "connect.rdp_download": "Remotedesktop-Datei herunterladen (.rdp)",
    "connect.vnc": "Verbinden Sie danach Ihr VNC-Programm mit {address}.",
    "connect.copy": "Kopieren",
    "connect.copied": "Kopiert",
    # What a copy button copies, for screen readers: three say "Kopieren".
    "connect.copy_connect": "Befehl für vdi-connect",
    "connect.copy_ssh": "SSH-Befehl",
    "connect.copy_ticket": "Einmal-Ticket",
    "connect.back": "Zurück zu Meine Desktops",
    # Errors as pages
    "forbidden.title": "Kein Zugriff",
    "forbidden.text": "Diese Seite ist der Administration vorbehalten.",
    "notfound.title": "Nicht gefunden",
    "notfound.text": "Diese Seite oder Sitzung gibt es nicht (mehr).",
    "fault.title": "Ein Fehler ist aufgetreten",
    "fault.text": "Das hat nicht geklappt; der Fehler ist protokolliert. Bitte versuchen Sie "
    "es noch einmal oder wenden Sie sich an die IT.",
    "unavailable.title": "Vorübergehend nicht erreichbar",
    "unavailable.text": "Der Dienst ist gerade nicht erreichbar. Bitte versuchen Sie es in "
    "einigen Sekunden noch einmal.",
    # Admin: hosts
    "hosts.title": "Hosts",
    "hosts.none": "Es ist noch kein Host angemeldet.",
    "col.name": "Name",
    "col.report": "Letzter Bericht",
    "col.load": "Lastindex",
    "col.sessions": "Sitzungen",
    "up.yes": "erreichbar",
    "up.no": "nicht erreichbar",
    "host.active": "aktiv",
    "host.draining": "wird geleert",
    "host.maintenance": "Wartung",
    "hosts.sessions": "{n} von {capacity}",
    "host.drain": "Leeren",
    "host.activate": "Aktivieren",
    "host.drained": "Host {host} wird geleert: Er nimmt keine neuen Sitzungen an.",
    "host.activated": "Host {host} ist aktiv und nimmt Sitzungen an.",
    "host.maintain": "Wartung",
    "host.in_maintenance": "Host {host} ist in Wartung: Er nimmt keine Sitzungen an, auch "
    "nicht für persönliche Desktops, und löst keinen Alarm aus, solange er schweigt.",
    # Admin: pools
    "pools.title": "Pools",
    "pools.none": "Es gibt noch keinen Pool.",
    "col.type": "Art",
    "col.protocol": "Protokoll",
    "col.licences": "Lizenzen",
    "col.in_use": "Belegt",
    "col.usable": "Nutzbar",
    "col.free": "Frei",
    "col.utilisation": "Auslastung",
    "col.desktops": "Desktops",
    "col.out_of_service": "Außer Betrieb",
    "col.departments": "Abteilungen",
    "pool.floating": "wechselnd",
    "pool.persistent": "persönlich",
    "pool.open_to_all": "alle",
    "pool.users": "Benutzer: {names}",
    # Admin: sessions
    "sessions.title": "Offene Sitzungen",
    "sessions.none": "Es gibt keine offene Sitzung.",
    "sessions.on_host": "auf {host}",
    "sessions.end": "Beenden",
    "sessions.ended": "Die Sitzung von {user} im Pool {pool} ist beendet.",
    # Admin: users
    "users.title": "Benutzer",
    "users.search": "Suchen (Name oder Abteilung)",
    "users.search_submit": "Suchen",
    "users.shown": "{shown} von {total} Benutzern angezeigt.",
    "col.role": "Rolle",
    "col.account": "Konto",
    "col.last_login": "Letzte Anmeldung",
    "role.staff": "Beschäftigte",
    "role.admin": "Administration",
    "account.ok": "offen",
    "account.locked": "gesperrt",
    "account.locked_out": "vorübergehend gesperrt",
    "account.locked_until": "nach Fehlversuchen, bis {time}",
    "users.failures": "{n} Fehlversuche",
    "totp.no": "ohne Authenticator",
    "user.lock": "Sperren",
    "user.unlock": "Entsperren",
    "user.reset_totp": "Authenticator zurücksetzen",
    "user.locked": "{user} ist gesperrt und überall abgemeldet; offene Desktop-Sitzungen "
    "sind beendet.",
    "user.unlocked": "{user} ist entsperrt.",
    "user.totp_reset": "Der Authenticator von {user} ist zurückgesetzt; bei der nächsten "
    "Anmeldung wird er neu eingerichtet.",
    # Admin: policies
    "policies.title": "Richtlinien",
    "caps.title": "Obergrenzen für Telearbeit je Abteilung",
    "caps.intro": "Damit das Amt besetzt bleibt: höchstens so viele Beschäftigte einer "
    "Abteilung arbeiten gleichzeitig von zu Hause. Der Außendienst zählt nicht mit.",
    "caps.none": "Keine Abteilung hat eine Obergrenze.",
    "col.cap": "Obergrenze",
    "col.staff": "Beschäftigte",
    "col.limit": "Jetzt höchstens",
    "caps.sessions": "{n} Sitzungen",
    "caps.share": "{percent} der Beschäftigten",
    "caps.department": "Abteilung",
    "caps.max": "Höchstzahl Sitzungen",
    "caps.percent": "oder Anteil der Beschäftigten in %",
    # The same field named in an error message, without the form's "oder".
    "caps.percent_field": "Anteil der Beschäftigten in %",
    "caps.hint": "Beide Felder leer lassen, um die Obergrenze zu entfernen.",
    "caps.set": "Obergrenze setzen",
    "caps.saved": "Die Obergrenze von {department} ist gespeichert.",
    "caps.removed": "{department} hat keine Obergrenze mehr.",
    "schedules.title": "Telearbeitszeiten",
    "schedules.intro": "Wer eigene Zeiten hat, für den gelten die der Abteilung nicht. "
    "Ohne Zeiten ist Telearbeit jederzeit erlaubt. Der Außendienst ist nicht betroffen.",
    "schedules.none": "Es gibt keine Telearbeitszeiten.",
    "col.scope": "Gilt für",
    "col.subject": "Wen",
    "col.days": "Tage",
    "col.window": "Uhrzeit",
    "scope.user": "Person",
    "scope.department": "Abteilung",
    "schedules.add": "Zeitfenster hinzufügen",
    "schedules.subject": "Benutzername oder Abteilung",
    "schedules.days": "Wochentage",
    "schedules.start": "Von",
    "schedules.end": "Bis",
    "schedules.added": "Das Zeitfenster ist gespeichert.",
    "schedules.removed": "Das Zeitfenster ist entfernt.",
    "schedules.added_outside": "Das Zeitfenster ist gespeichert. {count} Telearbeitssitzung(en) "
    "liegen jetzt außerhalb ihrer Zeiten; sie enden {minutes} Minuten nach dem Ende ihres "
    "Zeitfensters oder nach dieser Änderung, je nachdem, was später ist.",
    "schedules.removed_outside": "Das Zeitfenster ist entfernt. {count} Telearbeitssitzung(en) "
    "liegen jetzt außerhalb ihrer Zeiten; sie enden {minutes} Minuten nach dem Ende ihres "
    "Zeitfensters oder nach dieser Änderung, je nachdem, was später ist.",
    **_day_names(DAYS_DE),
    "reserve.title": "Reserve für vorrangige Aufgaben je Pool",
    "reserve.intro": "Ist ein Pool bis auf die Reserve belegt, erhalten nur noch "
    "Beschäftigte der vorrangigen Aufgabenbereiche einen Desktop.",
    "reserve.percent": "Reserve von {pool} in %",
    "reserve.label": "Reserve in %",
    "reserve.saved": "Die Reserve von {pool} ist gespeichert.",
    "classes.title": "Vorrangige Aufgabenbereiche",
    "classes.none": "Es gibt keinen vorrangigen Aufgabenbereich.",
    "col.members": "Beschäftigte",
    "classes.name": "Aufgabenbereich",
    "classes.add": "Hinzufügen",
    "classes.added": "{name} ist ein vorrangiger Aufgabenbereich.",
    "classes.exists": "{name} ist bereits ein vorrangiger Aufgabenbereich.",
    "classes.removed": "{name} ist kein vorrangiger Aufgabenbereich mehr.",
    "form.number": "{field}: Bitte eine ganze Zahl eingeben.",
    "form.percent": "{field}: Bitte eine Zahl von 0 bis 100 eingeben.",
    # Admin: audit
    "audit.title": "Protokoll",
    "audit.filters": "Filter",
    "audit.event": "Ereignis",
    "audit.result": "Ergebnis",
    "audit.user": "Benutzer",
    "audit.since": "Von",
    "audit.until": "Bis",
    "audit.apply": "Filtern",
    "audit.reset": "Alle Einträge",
    "audit.none": "Keine Einträge.",
    "audit.older": "Ältere Einträge",
    "audit.newest": "Neueste Einträge",
    "audit.paging": "Blättern im Protokoll",
    "audit.bad_time": "{field}: Bitte Datum und Uhrzeit angeben.",
    "col.time": "Zeit",
    "col.actor": "Durch",
    "col.source": "Quelle",
    "col.detail": "Details",
}

EN: dict[str, str] = {
    "app.name": "Virtual desktop",
    "skip": "Skip to content",
    "nav.label": "Main navigation",
    "nav.desktops": "My desktops",
    "nav.hosts": "Hosts",
    "nav.pools": "Pools",
    "nav.sessions": "Sessions",
    "nav.users": "Users",
    "nav.policies": "Policies",
    "nav.audit": "Audit log",
    "lang.label": "Language",
    "lang.other": "Deutsch",
    "signed_in_as": "Signed in as {name}",
    "logout": "Log out",
    "notice.ok": "Notice",
    "notice.error": "Error",
    "never": "never",
    "none": "–",
    "yes": "yes",
    "no": "no",
    "actions": "Actions",
    "save": "Save",
    "remove": "Remove",
    "age.s": "{n} s ago",
    "age.min": "{n} min ago",
    "age.h": "{n} h ago",
    "age.d": "{n} days ago",
    "time.format": "%Y-%m-%d %H:%M",
    "time.zone": "Times in {zone}.",
    "login.title": "Log in",
    "login.intro": "Log in with your user name, password and the code from your authenticator app.",
    "login.username": "User name",
    "login.password": "Password",
    "login.code": "Code from your authenticator app",
    "login.code_hint": "6 digits. At your first login leave this empty: you will then set "
    "up the app.",
    "login.recovery_toggle": "No phone at hand? Use a recovery code",
    "login.recovery": "Recovery code",
    "login.recovery_hint": "A code from the list you received at set-up, such as "
    "abcde-fghjk. Each code works once.",
    "login.submit": "Log in",
    "login.expired": "Your session has ended: after a period of inactivity, or because it "
    "was ended elsewhere. Please log in again.",
    "login.logged_out": "You have logged out.",
    "login.missing": "Please enter your user name and password.",
    "login.bad_code": "The code from the app has 6 digits.",
    "login.bad_recovery": "A recovery code looks like this: abcde-fghjk.",
    "login.both": "Please enter either the code from the app or a recovery code, not both.",
    "csrf.title": "Form expired",
    "csrf.text": "The form has expired or is incomplete and was not processed. Please "
    "reload the page and try again.",
    "enrol.title": "Set up your authenticator app",
    "enrol.intro": "Your password was right. To protect your account you also need an "
    "authenticator app on your phone, as with online banking.",
    "enrol.step1": "1. Scan this QR code with the authenticator app.",
    "enrol.qr_label": "QR code for the authenticator app",
    "enrol.manual": "Scanning does not work? Type this key into the app instead:",
    "enrol.manual_details": "Time-based (TOTP), 6 digits, a new code every 30 seconds.",
    "enrol.step2": "2. Enter the code the app shows now.",
    "enrol.code": "Code from the app (6 digits)",
    "enrol.submit": "Confirm",
    "enrol.renew": "Make a new QR code",
    "enrol.renew_hint": "The previous key then stops working.",
    "enrol.renewed": "A new key was made. Please scan the new QR code.",
    "enrol.expired": "The set-up has expired. Please log in again.",
    "enrol.too_many_codes": "Too many wrong codes. Check that the time on your phone is "
    "right, then log in again.",
    "enrol.cancel": "Cancel the set-up",
    "enrol.cancel_hint": "You can finish it the next time you log in.",
    "enrol.cancelled": "The set-up was cancelled. Log in again when you want to finish it.",
    "codes.title": "Your recovery codes",
    "codes.intro": "The app is set up. Keep these ten codes somewhere safe, for example "
    "printed. Each code replaces the app's code once when you do not have your phone.",
    "codes.once": "These codes are shown only now.",
    "codes.list": "Recovery codes",
    "codes.next": "Now log in with the next code from the app.",
    "codes.continue": "Continue to log in",
    "desktops.title": "My desktops",
    "desktops.pools": "Desktop pools you can use",
    "desktops.no_pools": "No desktop pool is open to you at the moment. Please contact IT.",
    "desktops.free": "{free} of {capacity} free",
    "desktops.none_usable": "No desktop is available here at the moment.",
    "desktops.field": "Field work",
    "desktops.connect": "Start desktop",
    "desktops.reconnect": "Connection details",
    "desktops.sessions": "Your open sessions",
    "desktops.no_sessions": "You have no open session.",
    "col.pool": "Pool",
    "col.state": "State",
    "col.desktop": "Desktop",
    "col.since": "Since",
    "col.user": "User",
    "col.department": "Department",
    "state.pending": "starting",
    "state.active": "active",
    "state.disconnected": "disconnected",
    "state.ended": "ended",
    "mode.home": "telework",
    "mode.field": "field work",
    "session.end": "End session",
    "session.ended": "Your session in pool {pool} has ended.",
    "confirm.end_session": "End the session in pool {pool}? Unsaved work on the desktop "
    "may be lost.",
    "confirm.end_other": "End the session of {user} in pool {pool}? Unsaved work on the "
    "desktop may be lost.",
    "confirm.lock": "Lock {user}? {user} is logged out everywhere; open desktop sessions end.",
    "confirm.reset_totp": "Reset the authenticator of {user}? The app and the recovery codes "
    "stop working; {user} is logged out.",
    "confirm.remove_cap": "Remove the cap of {department}?",
    "confirm.remove_schedule": "Remove the hours {window} of {subject}?",
    "confirm.remove_class": "Remove {name} as a priority task area? Its staff then no longer "
    "get a desktop from the reserve.",
    "connect.title": "Connect to pool {pool}",
    "connect.pending": "Your desktop is starting. This page updates itself as soon as it is ready.",
    "connect.reload": "Reload the page",
    "connect.ready": "Your desktop {desktop} is ready.",
    "connect.way1": "The easy way: vdi-connect",
    "connect.way1_text": "Run this command. It asks for your password and code, opens the "
    "tunnel and starts the program for the desktop.",
    "connect.way2": "Without vdi-connect: SSH tunnel and Remote Desktop",
    "connect.way2_text": "Open the tunnel with this command. When SSH asks for a password, "
    "enter the one-time ticket.",
    "connect.ticket": "One-time ticket",
    "connect.ticket_hint": "Works once and only for {seconds} seconds. Reload the page for "
    "a new one.",
    "connect.fingerprint": "Fingerprint of the gateway (compare it with what SSH shows on "
    "the first connection):",
    "connect.rdp": "Then open this file with Remote Desktop:",
    "connect.rdp_download": "Download the Remote Desktop file (.rdp)",
    "connect.vnc": "Then connect your VNC viewer to {address}.",
    "connect.copy": "Copy",
    "connect.copied": "Copied",
    "connect.copy_connect": "vdi-connect command",
    "connect.copy_ssh": "SSH command",
    "connect.copy_ticket": "one-time ticket",
    "connect.back": "Back to My desktops",
    "forbidden.title": "Access denied",
    "forbidden.text": "This page is for administrators only.",
    "notfound.title": "Not found",
    "notfound.text": "This page or session does not exist (any more).",
    "fault.title": "Something went wrong",
    "fault.text": "That did not work; the error has been logged. Please try again or contact IT.",
    "unavailable.title": "Temporarily unavailable",
    "unavailable.text": "The service cannot be reached just now. Please try again in a few "
    "seconds.",
    "hosts.title": "Hosts",
    "hosts.none": "No host has been registered yet.",
    "col.name": "Name",
    "col.report": "Last report",
    "col.load": "Load index",
    "col.sessions": "Sessions",
    "up.yes": "up",
    "up.no": "down",
    "host.active": "active",
    "host.draining": "draining",
    "host.maintenance": "maintenance",
    "hosts.sessions": "{n} of {capacity}",
    "host.drain": "Drain",
    "host.activate": "Activate",
    "host.drained": "Host {host} is draining: it takes no new sessions.",
    "host.activated": "Host {host} is active and takes sessions.",
    "host.maintain": "Maintenance",
    "host.in_maintenance": "Host {host} is in maintenance: it takes no sessions, not even "
    "for persistent desktops, and raises no alert while it is silent.",
    "pools.title": "Pools",
    "pools.none": "There is no pool yet.",
    "col.type": "Type",
    "col.protocol": "Protocol",
    "col.licences": "Licences",
    "col.in_use": "In use",
    "col.usable": "Usable",
    "col.free": "Free",
    "col.utilisation": "Utilisation",
    "col.desktops": "Desktops",
    "col.out_of_service": "Out of service",
    "col.departments": "Departments",
    "pool.floating": "floating",
    "pool.persistent": "persistent",
    "pool.open_to_all": "all",
    "pool.users": "users: {names}",
    "sessions.title": "Open sessions",
    "sessions.none": "There is no open session.",
    "sessions.on_host": "on {host}",
    "sessions.end": "End",
    "sessions.ended": "The session of {user} in pool {pool} has ended.",
    "users.title": "Users",
    "users.search": "Search (name or department)",
    "users.search_submit": "Search",
    "users.shown": "Showing {shown} of {total} users.",
    "col.role": "Role",
    "col.account": "Account",
    "col.last_login": "Last login",
    "role.staff": "staff",
    "role.admin": "administrator",
    "account.ok": "open",
    "account.locked": "locked",
    "account.locked_out": "locked out for now",
    "account.locked_until": "after failed logins, until {time}",
    "users.failures": "{n} failed logins",
    "totp.no": "no authenticator",
    "user.lock": "Lock",
    "user.unlock": "Unlock",
    "user.reset_totp": "Reset authenticator",
    "user.locked": "{user} is locked and logged out everywhere; open desktop sessions are ended.",
    "user.unlocked": "{user} is unlocked.",
    "user.totp_reset": "The authenticator of {user} is reset; it is set up again at the "
    "next login.",
    "policies.title": "Policies",
    "caps.title": "Telework caps per department",
    "caps.intro": "So that the office stays staffed: at most this many staff of a "
    "department work from home at once. Field work does not count.",
    "caps.none": "No department has a cap.",
    "col.cap": "Cap",
    "col.staff": "Staff",
    "col.limit": "Now at most",
    "caps.sessions": "{n} sessions",
    "caps.share": "{percent} of the staff",
    "caps.department": "Department",
    "caps.max": "Maximum sessions",
    "caps.percent": "or share of the staff in %",
    "caps.percent_field": "Share of the staff in %",
    "caps.hint": "Leave both fields empty to remove the cap.",
    "caps.set": "Set cap",
    "caps.saved": "The cap of {department} is saved.",
    "caps.removed": "{department} has no cap any more.",
    "schedules.title": "Telework hours",
    "schedules.intro": "A person's own hours replace their department's. Without hours, "
    "telework is allowed at any time. Field work is not affected.",
    "schedules.none": "There are no telework hours.",
    "col.scope": "Applies to",
    "col.subject": "Who",
    "col.days": "Days",
    "col.window": "Time",
    "scope.user": "person",
    "scope.department": "department",
    "schedules.add": "Add hours",
    "schedules.subject": "User name or department",
    "schedules.days": "Weekdays",
    "schedules.start": "From",
    "schedules.end": "Until",
    "schedules.added": "The hours are saved.",
    "schedules.removed": "The hours are removed.",
    "schedules.added_outside": "The hours are saved. {count} home session(s) are outside "
    "their hours now; they end {minutes} minutes after their hours ended or after this "
    "change, whichever is later.",
    "schedules.removed_outside": "The hours are removed. {count} home session(s) are outside "
    "their hours now; they end {minutes} minutes after their hours ended or after this "
    "change, whichever is later.",
    **_day_names(DAYS_EN),
    "reserve.title": "Reserve for priority tasks per pool",
    "reserve.intro": "Once a pool is filled up to its reserve, only staff of priority "
    "task areas get a desktop.",
    "reserve.percent": "Reserve of {pool} in %",
    "reserve.label": "Reserve in %",
    "reserve.saved": "The reserve of {pool} is saved.",
    "classes.title": "Priority task areas",
    "classes.none": "There is no priority task area.",
    "col.members": "Staff",
    "classes.name": "Task area",
    "classes.add": "Add",
    "classes.added": "{name} is a priority task area.",
    "classes.exists": "{name} is a priority task area already.",
    "classes.removed": "{name} is no longer a priority task area.",
    "form.number": "{field}: please enter a whole number.",
    "form.percent": "{field}: please enter a number from 0 to 100.",
    "audit.title": "Audit log",
    "audit.filters": "Filters",
    "audit.event": "Event",
    "audit.result": "Result",
    "audit.user": "User",
    "audit.since": "From",
    "audit.until": "Until",
    "audit.apply": "Filter",
    "audit.reset": "All entries",
    "audit.none": "No entries.",
    "audit.older": "Older entries",
    "audit.newest": "Newest entries",
    "audit.paging": "Pages of the audit log",
    "audit.bad_time": "{field}: please give a date and time.",
    "col.time": "Time",
    "col.actor": "By",
    "col.source": "Source",
    "col.detail": "Details",
}

CATALOGUE: dict[str, dict[str, str]] = {"de": DE, "en": EN}

# German for the broker's English error messages, by error code. English pages
# show the broker's own message, which often names the thing concerned.
SERVICE_ERRORS_DE: dict[str, str] = {
    "invalid_credentials": "Benutzername, Passwort oder Code ist falsch.",
    "locked": "Dieses Konto ist gesperrt. Versuchen Sie es später erneut oder wenden Sie "
    "sich an die IT.",
    "rate_limited": "Zu viele Versuche. Bitte warten Sie einen Moment.",
    "enrolment_invalid": "Die Einrichtung ist abgelaufen. Bitte melden Sie sich erneut an.",
    "invalid_code": "Der Code ist nicht richtig. Prüfen Sie die Uhrzeit Ihres Telefons.",
    "invalid_request": "Die Eingabe ist nicht gültig.",
    "not_found": "Das gibt es nicht (mehr).",
    "unknown_session": "Diese Sitzung gibt es nicht (mehr).",
    "unknown_pool": "Diesen Pool gibt es nicht (mehr).",
    "unknown_user": "Diesen Benutzer gibt es nicht.",
    "unknown_schedule": "Dieses Zeitfenster gibt es nicht (mehr).",
    "unknown_priority_class": "Diesen Aufgabenbereich gibt es nicht (mehr).",
    "invalid_name": "Ein Name hat 1 bis 64 Zeichen: Buchstaben, Ziffern, Leerzeichen, "
    "Punkt, Bindestrich, Unterstrich; er beginnt mit einem Buchstaben oder einer Ziffer.",
    "invalid_cap": "Eine Obergrenze ist entweder eine Anzahl Sitzungen (0 bis 100000) oder "
    "ein Anteil über 0 bis 100 % der Beschäftigten, nicht beides.",
    "invalid_scope": "Ein Zeitfenster gilt für eine Person oder eine Abteilung.",
    "invalid_schedule": "Das Zeitfenster ist nicht gültig: Bitte mindestens einen Wochentag "
    "und Uhrzeiten wie 07:30 angeben.",
    "invalid_limit": "Die Reserve ist ein Anteil von 0 bis unter 100 %.",
    "exists": "Das gibt es bereits.",
    "own_account": "Das eigene Konto können Sie nicht sperren.",
    "conflict": "Das wurde gleichzeitig geändert; bitte noch einmal versuchen.",
    "retry": "Der Desktop konnte gerade nicht zugewiesen werden; bitte noch einmal versuchen.",
}

# English for the few codes whose broker message speaks the API's units: the
# API takes shares as fractions ("0.1 = a tenth"), the forms as percentages, so
# a page must not answer "100" in a percent field with "from 0 to below 1".
SERVICE_ERRORS_EN: dict[str, str] = {
    "invalid_cap": "A cap is either a number of sessions (0 to 100000) or a share above 0 "
    "and up to 100 % of the staff, not both.",
    "invalid_limit": "The reserve is a share from 0 to below 100 %.",
}
SERVICE_ERRORS = {"de": SERVICE_ERRORS_DE, "en": SERVICE_ERRORS_EN}

Translate = Callable[..., str]


def translator(language: str) -> Translate:
    """`t(key, **params)` for one language; an unknown key is a programming error."""
    texts = CATALOGUE[language if language in SUPPORTED else "de"]

    def t(key: str, **params: Any) -> str:
        text = texts[key]
        return text.format(**params) if params else text

    return t


def error_text(exc: VdiError, language: str) -> str:
    """What a page says about a refused action, in its language. Refusals of a
    desktop carry their own message in the language they were asked in."""
    return SERVICE_ERRORS.get(language, SERVICE_ERRORS_DE).get(exc.code, exc.message)
