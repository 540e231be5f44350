"""Write the gettext catalogues of the counter screen (eticket_core/locale/<lang>/LC_MESSAGES/eticket.po and .mo).

    .venv/bin/python scripts/translations.py

The English source strings are the msgids; the table below is the translation memory. A test checks that
every string the scenes use is translated in every language and that the committed .mo files are current.
"""

from __future__ import annotations

import io
import sys
from datetime import UTC, datetime
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import write_po

ROOT = Path(__file__).resolve().parents[1] / "eticket_core" / "locale"

MESSAGES: dict[str, dict[str, str]] = {
    "Connecting…": {"fr": "Connexion…", "it": "Connessione…", "de": "Verbindung…", "es": "Conectando…"},
    "The receipt screen is starting.": {
        "fr": "L'écran des tickets démarre.", "it": "Lo schermo degli scontrini si avvia.",
        "de": "Der Belegbildschirm startet.", "es": "La pantalla de tickets se está iniciando."},
    "Paperless receipts": {"fr": "Tickets sans papier", "it": "Scontrini senza carta", "de": "Belege ohne Papier",
                           "es": "Tickets sin papel"},
    "Pairing locked": {"fr": "Appairage bloqué", "it": "Abbinamento bloccato", "de": "Kopplung gesperrt",
                       "es": "Emparejamiento bloqueado"},
    "Too many wrong codes.": {"fr": "Trop de codes erronés.", "it": "Troppi codici errati.",
                              "de": "Zu viele falsche Codes.", "es": "Demasiados códigos erróneos."},
    "Try again in a minute.": {"fr": "Réessayez dans une minute.", "it": "Riprova tra un minuto.",
                               "de": "In einer Minute erneut versuchen.", "es": "Inténtelo en un minuto."},
    "Pair your till": {"fr": "Appairez votre caisse", "it": "Abbina la tua cassa", "de": "Kasse koppeln",
                       "es": "Empareje su caja"},
    "Scan this code with the till,": {"fr": "Scannez ce code avec la caisse,",
                                      "it": "Scansiona il codice con la cassa,",
                                      "de": "Code mit der Kasse scannen", "es": "Escanee este código con la caja,"},
    "This code expires in {minutes} min": {"fr": "Ce code expire dans {minutes} min",
                                           "it": "Il codice scade tra {minutes} min",
                                           "de": "Code läuft in {minutes} Min. ab",
                                           "es": "El código caduca en {minutes} min"},
    "or type:": {"fr": "ou saisissez :", "it": "o digita:", "de": "oder eingeben:", "es": "o escriba:"},
    "Scan to get": {"fr": "Scannez pour obtenir", "it": "Scansiona per avere", "de": "Scannen Sie hier",
                    "es": "Escanee para obtener"},
    "your receipt": {"fr": "votre ticket", "it": "lo scontrino", "de": "für Ihren Beleg", "es": "su ticket"},
    "Hold your phone close to scan": {"fr": "Approchez votre téléphone pour scanner",
                                      "it": "Avvicina il telefono per scansionare",
                                      "de": "Zum Scannen das Handy nah heranhalten",
                                      "es": "Acerque el teléfono para escanear"},
    "No app, no e-mail": {"fr": "Sans appli, sans e-mail", "it": "Senza app, senza e-mail",
                          "de": "Ohne App, ohne E-Mail", "es": "Sin app, sin correo"},
    "Link valid {days} days": {"fr": "Lien valable {days} jours", "it": "Link valido {days} giorni",
                               "de": "Link {days} Tage gültig", "es": "Enlace válido {days} días"},
    "Receipt downloaded": {"fr": "Ticket téléchargé", "it": "Scontrino scaricato", "de": "Beleg heruntergeladen",
                           "es": "Ticket descargado"},
    "Thank you!": {"fr": "Merci !", "it": "Grazie!", "de": "Danke!", "es": "¡Gracias!"},
    "This screen was removed": {"fr": "Cet écran a été retiré", "it": "Questo schermo è stato rimosso",
                                "de": "Dieser Bildschirm wurde entfernt", "es": "Esta pantalla fue retirada"},
    "To show receipts here again, run 'eticket screens add' on the device, then start this screen with "
    "'eticket kiosk --claim' and the new link.": {
        "fr": "Pour afficher à nouveau les tickets ici, lancez 'eticket screens add' sur l'appareil, puis "
              "démarrez cet écran avec 'eticket kiosk --claim' et le nouveau lien.",
        "it": "Per mostrare di nuovo gli scontrini qui, esegui 'eticket screens add' sul dispositivo, poi avvia "
              "questo schermo con 'eticket kiosk --claim' e il nuovo link.",
        "de": "Damit hier wieder Belege erscheinen, 'eticket screens add' auf dem Gerät ausführen und diesen "
              "Bildschirm dann mit 'eticket kiosk --claim' und dem neuen Link starten.",
        "es": "Para volver a mostrar tickets aquí, ejecute 'eticket screens add' en el dispositivo y luego inicie "
              "esta pantalla con 'eticket kiosk --claim' y el nuevo enlace."},
    "Add a screen": {"fr": "Ajouter un écran", "it": "Aggiungi uno schermo", "de": "Bildschirm hinzufügen",
                     "es": "Añadir una pantalla"},
    "Open this link on": {"fr": "Ouvrez ce lien sur", "it": "Apri questo link su", "de": "Diesen Link öffnen auf",
                          "es": "Abra este enlace en"},
    "the screen '{name}'": {"fr": "l'écran « {name} »", "it": "lo schermo «{name}»", "de": "dem Bildschirm „{name}“",
                            "es": "la pantalla «{name}»"},
    "Step 1: Wi-Fi": {"fr": "Étape 1 : Wi-Fi", "it": "Passo 1: Wi-Fi", "de": "Schritt 1: WLAN",
                      "es": "Paso 1: Wi-Fi"},
    "Join the shop's Wi-Fi": {"fr": "Connectez-vous au Wi-Fi", "it": "Connettiti al Wi-Fi",
                              "de": "Mit dem WLAN verbinden", "es": "Conéctese al Wi-Fi"},
    "The receipt code comes next": {"fr": "Le code du ticket suit", "it": "Poi il codice dello scontrino",
                                    "de": "Dann folgt der Beleg-Code", "es": "Después, el código del ticket"},
    "Settings not applied:": {"fr": "Réglages non appliqués :", "it": "Impostazioni non applicate:",
                              "de": "Einstellungen nicht übernommen:", "es": "Ajustes no aplicados:"},
    "Storage repaired:": {"fr": "Stockage réparé :", "it": "Archivio riparato:", "de": "Speicher repariert:",
                          "es": "Almacenamiento reparado:"},
    "Storage damaged:": {"fr": "Stockage endommagé :", "it": "Archivio danneggiato:", "de": "Speicher beschädigt:",
                         "es": "Almacenamiento dañado:"},
    "Receipts lost: {n}": {"fr": "Tickets perdus : {n}", "it": "Scontrini persi: {n}", "de": "Verlorene Belege: {n}",
                           "es": "Tickets perdidos: {n}"},
    "All receipts and pairings were lost: pair every till again.": {
        "fr": "Tous les tickets et appairages sont perdus : réappairez chaque caisse.",
        "it": "Tutti gli scontrini e gli abbinamenti sono andati persi: riabbinate ogni cassa.",
        "de": "Alle Belege und Kopplungen sind verloren: jede Kasse neu koppeln.",
        "es": "Se perdieron todos los tickets y emparejamientos: vuelva a emparejar cada caja."},
    "Tills to pair again: {n}": {"fr": "Caisses à réappairer : {n}", "it": "Casse da riabbinare: {n}",
                                 "de": "Neu zu koppelnde Kassen: {n}", "es": "Cajas por volver a emparejar: {n}"},
    "Receipts cannot be stored now.": {"fr": "Les tickets ne peuvent pas être enregistrés.",
                                       "it": "Gli scontrini non possono essere salvati.",
                                       "de": "Belege können nicht gespeichert werden.",
                                       "es": "Los tickets no se pueden guardar."},
    "The SD card is full.": {"fr": "La carte SD est pleine.", "it": "La scheda SD è piena.",
                             "de": "Die SD-Karte ist voll.", "es": "La tarjeta SD está llena."},
    "The SD card may be failing.": {"fr": "La carte SD est peut-être défaillante.",
                                    "it": "La scheda SD potrebbe essere difettosa.",
                                    "de": "Die SD-Karte ist vielleicht defekt.",
                                    "es": "La tarjeta SD puede estar fallando."},
    "New till:": {"fr": "Nouvelle caisse :", "it": "Nuova cassa:", "de": "Neue Kasse:", "es": "Nueva caja:"},
    "The till at {address} may print receipts now.": {
        "fr": "La caisse {address} peut maintenant imprimer des tickets.",
        "it": "La cassa {address} ora può stampare scontrini.",
        "de": "Die Kasse {address} darf jetzt Belege drucken.",
        "es": "La caja {address} ya puede imprimir tickets."},
    "Something went wrong": {"fr": "Un problème est survenu", "it": "Si è verificato un problema",
                             "de": "Etwas ist schiefgelaufen", "es": "Algo ha fallado"},
    "Please ask at the counter.": {"fr": "Merci de demander en caisse.", "it": "Chieda alla cassa.",
                                   "de": "Bitte an der Kasse fragen.", "es": "Pregunte en la caja."},
    # The device's own web pages (appliance/web: screen pairing, /screen without a key, receipt pages, home).
    "This screen is not paired. On the device, run 'eticket screens add' and open the link it shows.": {
        "fr": "Cet écran n'est pas appairé. Sur l'appareil, lancez 'eticket screens add' et ouvrez le lien affiché.",
        "it": "Questo schermo non è abbinato. Sul dispositivo esegui 'eticket screens add' e apri il link mostrato.",
        "de": "Dieser Bildschirm ist nicht gekoppelt. Auf dem Gerät 'eticket screens add' ausführen und den "
              "angezeigten Link öffnen.",
        "es": "Esta pantalla no está emparejada. En el dispositivo, ejecute 'eticket screens add' y abra el "
              "enlace que muestra."},
    "Pair this screen": {"fr": "Appairer cet écran", "it": "Abbina questo schermo", "de": "Diesen Bildschirm koppeln",
                         "es": "Emparejar esta pantalla"},
    "Screen paired": {"fr": "Écran appairé", "it": "Schermo abbinato", "de": "Bildschirm gekoppelt",
                      "es": "Pantalla emparejada"},
    "This screen is paired as {name}.": {"fr": "Cet écran est appairé sous le nom {name}.",
                                         "it": "Questo schermo è abbinato come {name}.",
                                         "de": "Dieser Bildschirm ist als {name} gekoppelt.",
                                         "es": "Esta pantalla está emparejada como {name}."},
    "Open the screen": {"fr": "Ouvrir l'écran", "it": "Apri lo schermo", "de": "Bildschirm öffnen",
                        "es": "Abrir la pantalla"},
    "(bookmark it, or add it to the home screen)": {
        "fr": "(ajoutez-le aux favoris ou à l'écran d'accueil)",
        "it": "(salvalo nei preferiti o aggiungilo alla schermata Home)",
        "de": "(als Lesezeichen speichern oder zum Startbildschirm hinzufügen)",
        "es": "(guárdelo en marcadores o añádalo a la pantalla de inicio)"},
    "Link not valid": {"fr": "Lien non valable", "it": "Link non valido", "de": "Link ungültig",
                       "es": "Enlace no válido"},
    "This link was already used: each link pairs one screen.": {
        "fr": "Ce lien a déjà été utilisé : chaque lien appaire un seul écran.",
        "it": "Questo link è già stato usato: ogni link abbina un solo schermo.",
        "de": "Dieser Link wurde schon benutzt: Jeder Link koppelt nur einen Bildschirm.",
        "es": "Este enlace ya se usó: cada enlace empareja una sola pantalla."},
    "This link has expired: a link is valid 10 minutes.": {
        "fr": "Ce lien a expiré : un lien est valable 10 minutes.",
        "it": "Questo link è scaduto: un link è valido 10 minuti.",
        "de": "Dieser Link ist abgelaufen: Ein Link gilt 10 Minuten.",
        "es": "Este enlace ha caducado: un enlace es válido 10 minutos."},
    "A newer link replaced this one.": {"fr": "Un lien plus récent a remplacé celui-ci.",
                                        "it": "Un link più recente ha sostituito questo.",
                                        "de": "Ein neuerer Link hat diesen ersetzt.",
                                        "es": "Un enlace más reciente sustituyó a este."},
    "This link is not known here (or the device restarted since).": {
        "fr": "Ce lien est inconnu ici (ou l'appareil a redémarré depuis).",
        "it": "Questo link non è noto qui (o il dispositivo è stato riavviato nel frattempo).",
        "de": "Dieser Link ist hier unbekannt (oder das Gerät wurde seitdem neu gestartet).",
        "es": "Este enlace no se conoce aquí (o el dispositivo se ha reiniciado desde entonces)."},
    "On the device, run 'eticket screens add' again and open the new link.": {
        "fr": "Sur l'appareil, relancez 'eticket screens add' et ouvrez le nouveau lien.",
        "it": "Sul dispositivo esegui di nuovo 'eticket screens add' e apri il nuovo link.",
        "de": "Auf dem Gerät erneut 'eticket screens add' ausführen und den neuen Link öffnen.",
        "es": "En el dispositivo, ejecute de nuevo 'eticket screens add' y abra el nuevo enlace."},
    "Receipt not found": {"fr": "Ticket introuvable", "it": "Scontrino non trovato", "de": "Beleg nicht gefunden",
                          "es": "Ticket no encontrado"},
    "This receipt link is not known here. Check that you scanned the code on this shop's screen.": {
        "fr": "Ce lien de ticket est inconnu ici. Vérifiez que vous avez scanné le code sur l'écran de ce magasin.",
        "it": "Questo link dello scontrino non è noto qui. Verifica di aver scansionato il codice sullo schermo "
              "di questo negozio.",
        "de": "Dieser Beleg-Link ist hier unbekannt. Bitte prüfen, ob Sie den Code auf dem Bildschirm dieses "
              "Geschäfts gescannt haben.",
        "es": "Este enlace de ticket no se conoce aquí. Compruebe que escaneó el código de la pantalla de esta "
              "tienda."},
    "Receipt expired": {"fr": "Ticket expiré", "it": "Scontrino scaduto", "de": "Beleg abgelaufen",
                        "es": "Ticket caducado"},
    "This receipt has expired and was deleted. Ask the shop for a copy.": {
        "fr": "Ce ticket a expiré et a été supprimé. Demandez-en une copie au magasin.",
        "it": "Questo scontrino è scaduto ed è stato eliminato. Chiedi una copia al negozio.",
        "de": "Dieser Beleg ist abgelaufen und wurde gelöscht. Bitten Sie das Geschäft um eine Kopie.",
        "es": "Este ticket ha caducado y se ha borrado. Pida una copia a la tienda."},
    "Receipt damaged": {"fr": "Ticket endommagé", "it": "Scontrino danneggiato", "de": "Beleg beschädigt",
                        "es": "Ticket dañado"},
    "This receipt was damaged in the device's storage and cannot be shown. Please ask at the counter for a copy.": {
        "fr": "Ce ticket a été endommagé dans la mémoire de l'appareil et ne peut pas être affiché. Merci de "
              "demander une copie en caisse.",
        "it": "Questo scontrino è stato danneggiato nella memoria del dispositivo e non può essere mostrato. "
              "Chiedi una copia alla cassa.",
        "de": "Dieser Beleg wurde im Speicher des Geräts beschädigt und kann nicht angezeigt werden. Bitte an "
              "der Kasse um eine Kopie fragen.",
        "es": "Este ticket se dañó en la memoria del dispositivo y no se puede mostrar. Pida una copia en la "
              "caja."},
    "Receipt not available now": {"fr": "Ticket indisponible pour le moment",
                                  "it": "Scontrino non disponibile ora", "de": "Beleg gerade nicht verfügbar",
                                  "es": "Ticket no disponible ahora"},
    "The device cannot read its receipts right now. Please ask at the counter.": {
        "fr": "L'appareil ne peut pas lire ses tickets pour le moment. Merci de demander en caisse.",
        "it": "Il dispositivo non può leggere i suoi scontrini ora. Chiedi alla cassa.",
        "de": "Das Gerät kann seine Belege gerade nicht lesen. Bitte an der Kasse fragen.",
        "es": "El dispositivo no puede leer sus tickets ahora. Pregunte en la caja."},
    "This is an eTicket receipt screen. Scan the QR code shown at the counter to get your receipt.": {
        "fr": "Ceci est un écran de tickets eTicket. Scannez le QR code affiché en caisse pour obtenir votre ticket.",
        "it": "Questo è uno schermo per scontrini eTicket. Scansiona il codice QR mostrato alla cassa per avere "
              "il tuo scontrino.",
        "de": "Dies ist ein eTicket-Belegbildschirm. Scannen Sie den QR-Code an der Kasse, um Ihren Beleg zu "
              "erhalten.",
        "es": "Esta es una pantalla de tickets eTicket. Escanee el código QR que se muestra en la caja para "
              "obtener su ticket."},
    "Page not found": {"fr": "Page introuvable", "it": "Pagina non trovata", "de": "Seite nicht gefunden",
                       "es": "Página no encontrada"},
    "This device has no page at this address. Check the link, or scan the code on the shop's screen.": {
        "fr": "Cet appareil n'a pas de page à cette adresse. Vérifiez le lien, ou scannez le code sur l'écran du "
              "magasin.",
        "it": "Questo dispositivo non ha una pagina a questo indirizzo. Controlla il link o scansiona il codice "
              "sullo schermo del negozio.",
        "de": "Dieses Gerät hat unter dieser Adresse keine Seite. Bitte den Link prüfen oder den Code auf dem "
              "Bildschirm des Geschäfts scannen.",
        "es": "Este dispositivo no tiene ninguna página en esta dirección. Compruebe el enlace o escanee el código "
              "de la pantalla de la tienda."},
}
LANGUAGES = ("fr", "it", "de", "es")
FIXED_DATE = datetime(2026, 1, 1, tzinfo=UTC)
"""Catalogue dates are fixed so that the files are the same bytes whenever they are rebuilt."""


def catalogues() -> dict[str, tuple[bytes, bytes]]:
    """``{lang: (po bytes, mo bytes)}`` built from MESSAGES (deterministic: no dates)."""
    out: dict[str, tuple[bytes, bytes]] = {}
    for lang in LANGUAGES:
        catalog = Catalog(locale=lang, domain="eticket", project="eTicket", version="1", charset="utf-8",
                          creation_date=FIXED_DATE, revision_date=FIXED_DATE, fuzzy=False)
        for msgid, translations in MESSAGES.items():
            catalog.add(msgid, translations[lang])
        po, mo = io.BytesIO(), io.BytesIO()
        write_po(po, catalog, omit_header=True, sort_output=True)
        write_mo(mo, catalog)
        out[lang] = (po.getvalue(), mo.getvalue())
    return out


def main() -> None:
    for lang, (po, mo) in catalogues().items():
        folder = ROOT / lang / "LC_MESSAGES"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "eticket.po").write_bytes(po)
        (folder / "eticket.mo").write_bytes(mo)
        print(f"{lang}: {len(MESSAGES)} messages", file=sys.stderr)


if __name__ == "__main__":
    main()
