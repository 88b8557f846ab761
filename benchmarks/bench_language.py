"""Language detection: lingua (``ticket_assets.core.language``) vs the word-list detectors it replaced.

Usage:
    .venv/bin/python benchmarks/bench_language.py [--shared-rows 38269]

Same run, same texts, three detectors:
- ``lingua``: the shipped ``detect_language`` (EN/FR/DE/ES models, English unless confident);
- ``wordlist (sources)``: the stop-word counter that sources/text.py used at import (en/fr only);
- ``wordlist (draft)``: the twin with other word lists that rag/draft.py used for replies (en/fr only).

Data: hand-written help-desk texts in English, French, German and Spanish (below), in three shapes:
a subject line (2-5 words), one sentence, and a full message (greeting + sentence + closing).
Accuracy is given overall and on EN/FR only (the only languages the word lists know), with the
time per text (single calls; lingua also in batch). Then the shared IT-service dataset (lower-cased
keyword English): how many rows each detector labels non-English, and a sweep of lingua's
confidence threshold on both sets. Memory: resident set growth after lingua's four models load.
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import re
import sys
import time
import unicodedata
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import psutil

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
SHARED = REPO_ROOT.parent / "shared" / "datasets" / "it-service-tickets" / "train.csv.gz"

SUBJECTS = {
    "en": [
        "Printer not working", "Cannot log in", "VPN keeps disconnecting", "Outlook crashes on start",
        "Need a new laptop", "Password expired", "Monitor flickering", "Shared drive access request",
        "Teams audio is broken", "Laptop battery drains fast", "Wi-Fi down in meeting room",
        "Account locked out", "Software installation request", "Keyboard missing keys",
        "Email bouncing back", "Phone not ringing", "Slow computer", "Access to payroll folder",
        "Broken docking station", "New starter equipment",
    ],
    "fr": [
        "Imprimante en panne", "Impossible de me connecter", "Le VPN se déconnecte", "Outlook plante au démarrage",
        "Besoin d'un nouvel ordinateur", "Mot de passe expiré", "Écran qui clignote", "Accès au lecteur partagé",
        "Pas de son dans Teams", "Batterie qui se vide vite", "Wi-Fi coupé en salle de réunion",
        "Compte bloqué", "Demande d'installation de logiciel", "Clavier défectueux", "Courriels renvoyés",
        "Téléphone muet", "Ordinateur très lent", "Accès au dossier de paie", "Station d'accueil cassée",
        "Matériel pour un nouvel arrivant",
    ],
    "de": [
        "Drucker funktioniert nicht", "Anmeldung nicht möglich", "VPN bricht ständig ab", "Outlook stürzt beim Start ab",
        "Neuer Laptop benötigt", "Passwort abgelaufen", "Bildschirm flackert", "Zugriff auf Netzlaufwerk",
        "Kein Ton in Teams", "Akku entlädt sich schnell", "WLAN im Besprechungsraum ausgefallen",
        "Konto gesperrt", "Antrag auf Softwareinstallation", "Tastatur defekt", "E-Mails kommen zurück",
        "Telefon klingelt nicht", "Rechner sehr langsam", "Zugriff auf den Gehaltsordner",
        "Dockingstation kaputt", "Ausstattung für neuen Mitarbeiter",
    ],
    "es": [
        "Impresora no funciona", "No puedo iniciar sesión", "La VPN se desconecta", "Outlook se cierra al abrir",
        "Necesito un portátil nuevo", "Contraseña caducada", "La pantalla parpadea", "Acceso a la unidad compartida",
        "Sin sonido en Teams", "La batería se agota rápido", "Wi-Fi caído en la sala de reuniones",
        "Cuenta bloqueada", "Solicitud de instalación de software", "Teclado roto", "Correos devueltos",
        "El teléfono no suena", "Ordenador muy lento", "Acceso a la carpeta de nóminas",
        "Base de conexión rota", "Equipo para un nuevo empleado",
    ],
}  # fmt: skip
SENTENCES = {
    "en": [
        "The printer on the second floor has stopped printing since this morning.",
        "I cannot log in to my account after changing my password yesterday.",
        "My VPN connection drops every few minutes when I work from home.",
        "Outlook crashes every time I try to open an attachment.",
        "My laptop is very slow and the fan is always running.",
        "I need access to the finance shared drive for the quarterly report.",
        "The screen of my monitor keeps flickering when I connect it to the dock.",
        "Nobody can hear me in Teams meetings although the microphone is plugged in.",
        "Could you please install the latest version of Visio on my computer?",
        "My account has been locked after too many login attempts.",
        "Emails to our external partners are bouncing back with an error.",
        "The Wi-Fi in the main meeting room does not work at all today.",
        "A new colleague starts on Monday and needs a laptop and a badge.",
        "The desk phone does not ring when someone calls my extension.",
        "I accidentally deleted a folder on the shared drive, can it be restored?",
        "The badge reader at the main entrance does not accept my card anymore.",
        "Excel freezes whenever I open the large budget spreadsheet.",
        "I would like to request a second monitor for my workstation.",
        "The projector in room B12 shows no signal from my laptop.",
        "My mailbox is full and I can no longer send any messages.",
    ],
    "fr": [
        "L'imprimante du deuxième étage n'imprime plus depuis ce matin.",
        "Je n'arrive pas à me connecter à mon compte depuis le changement de mot de passe d'hier.",
        "Ma connexion VPN se coupe toutes les quelques minutes quand je travaille de chez moi.",
        "Outlook plante chaque fois que j'essaie d'ouvrir une pièce jointe.",
        "Mon ordinateur portable est très lent et le ventilateur tourne sans arrêt.",
        "J'ai besoin d'un accès au lecteur partagé de la comptabilité pour le rapport trimestriel.",
        "L'écran de mon moniteur clignote quand je le branche sur la station d'accueil.",
        "Personne ne m'entend pendant les réunions Teams alors que le micro est branché.",
        "Pourriez-vous installer la dernière version de Visio sur mon poste ?",
        "Mon compte a été bloqué après trop de tentatives de connexion.",
        "Les courriels envoyés à nos partenaires externes sont renvoyés avec une erreur.",
        "Le Wi-Fi de la grande salle de réunion ne fonctionne pas du tout aujourd'hui.",
        "Une nouvelle collègue arrive lundi et a besoin d'un ordinateur et d'un badge.",
        "Le téléphone de mon bureau ne sonne pas quand on appelle mon poste.",
        "J'ai supprimé par erreur un dossier sur le lecteur partagé, peut-on le restaurer ?",
        "Le lecteur de badge de l'entrée principale n'accepte plus ma carte.",
        "Excel se fige dès que j'ouvre le gros fichier du budget.",
        "Je voudrais demander un deuxième écran pour mon poste de travail.",
        "Le vidéoprojecteur de la salle B12 ne reçoit aucun signal de mon ordinateur.",
        "Ma boîte aux lettres est pleine et je ne peux plus envoyer de messages.",
    ],
    "de": [
        "Der Drucker im zweiten Stock druckt seit heute Morgen nicht mehr.",
        "Ich kann mich nach der Passwortänderung von gestern nicht mehr anmelden.",
        "Meine VPN-Verbindung bricht im Homeoffice alle paar Minuten ab.",
        "Outlook stürzt jedes Mal ab, wenn ich einen Anhang öffnen möchte.",
        "Mein Laptop ist sehr langsam und der Lüfter läuft ständig.",
        "Ich brauche Zugriff auf das Netzlaufwerk der Buchhaltung für den Quartalsbericht.",
        "Der Bildschirm flackert, sobald ich ihn an die Dockingstation anschließe.",
        "In Teams-Besprechungen hört mich niemand, obwohl das Mikrofon angeschlossen ist.",
        "Könnten Sie bitte die neueste Version von Visio auf meinem Rechner installieren?",
        "Mein Konto wurde nach zu vielen Anmeldeversuchen gesperrt.",
        "E-Mails an unsere externen Partner kommen mit einer Fehlermeldung zurück.",
        "Das WLAN im großen Besprechungsraum funktioniert heute überhaupt nicht.",
        "Eine neue Kollegin fängt am Montag an und braucht einen Laptop und einen Ausweis.",
        "Mein Tischtelefon klingelt nicht, wenn jemand meine Durchwahl anruft.",
        "Ich habe versehentlich einen Ordner auf dem Netzlaufwerk gelöscht, kann man ihn wiederherstellen?",
        "Der Ausweisleser am Haupteingang akzeptiert meine Karte nicht mehr.",
        "Excel friert ein, sobald ich die große Budgetdatei öffne.",
        "Ich möchte einen zweiten Monitor für meinen Arbeitsplatz beantragen.",
        "Der Beamer in Raum B12 bekommt kein Signal von meinem Laptop.",
        "Mein Postfach ist voll und ich kann keine Nachrichten mehr senden.",
    ],
    "es": [
        "La impresora de la segunda planta no imprime desde esta mañana.",
        "No puedo entrar en mi cuenta desde que cambié la contraseña ayer.",
        "Mi conexión VPN se corta cada pocos minutos cuando trabajo desde casa.",
        "Outlook se cierra cada vez que intento abrir un archivo adjunto.",
        "Mi portátil va muy lento y el ventilador no para de girar.",
        "Necesito acceso a la unidad compartida de contabilidad para el informe trimestral.",
        "La pantalla del monitor parpadea cuando lo conecto a la base.",
        "Nadie me oye en las reuniones de Teams aunque el micrófono está conectado.",
        "¿Podrían instalar la última versión de Visio en mi ordenador?",
        "Mi cuenta se ha bloqueado después de demasiados intentos de acceso.",
        "Los correos a nuestros socios externos vuelven con un error.",
        "El Wi-Fi de la sala de reuniones grande no funciona nada hoy.",
        "Una compañera nueva empieza el lunes y necesita un portátil y una tarjeta.",
        "El teléfono de mi mesa no suena cuando alguien llama a mi extensión.",
        "Borré sin querer una carpeta de la unidad compartida, ¿se puede recuperar?",
        "El lector de tarjetas de la entrada principal ya no acepta mi tarjeta.",
        "Excel se congela cada vez que abro la hoja grande del presupuesto.",
        "Quisiera pedir un segundo monitor para mi puesto de trabajo.",
        "El proyector de la sala B12 no recibe señal de mi portátil.",
        "Mi buzón está lleno y ya no puedo enviar mensajes.",
    ],
}  # fmt: skip
GREETINGS = {
    "en": ["Hello,", "Hi team,", "Good morning,", "Dear IT support,"],
    "fr": ["Bonjour,", "Bonjour à tous,", "Bonjour l'équipe,", "Madame, Monsieur,"],
    "de": ["Hallo,", "Guten Morgen,", "Liebes IT-Team,", "Sehr geehrte Damen und Herren,"],
    "es": ["Hola,", "Buenos días,", "Hola equipo,", "Estimado soporte,"],
}
CLOSINGS = {
    "en": ["Thanks in advance.", "Best regards, Anna", "Thank you for your help.", "Kind regards"],
    "fr": ["Merci d'avance.", "Cordialement, Anne", "Merci pour votre aide.", "Bien à vous"],
    "de": ["Vielen Dank im Voraus.", "Viele Grüße, Anna", "Danke für Ihre Hilfe.", "Mit freundlichen Grüßen"],
    "es": ["Gracias de antemano.", "Saludos, Ana", "Gracias por su ayuda.", "Un saludo"],
}


def samples() -> list[tuple[str, str, str]]:
    """(language, shape, text) for every hand-written sample."""
    out = []
    for lang in SUBJECTS:
        out += [(lang, "subject", text) for text in SUBJECTS[lang]]
        out += [(lang, "sentence", text) for text in SENTENCES[lang]]
        for i, text in enumerate(SENTENCES[lang]):
            greeting, closing = GREETINGS[lang][i % 4], CLOSINGS[lang][(i // 4) % 4]
            out.append((lang, "message", f"{greeting}\n{text}\n{closing}"))
    return out


# The detectors replaced by ticket_assets.core.language, verbatim, as the baselines. ------------
_WORD_SOURCES = re.compile(r"[a-zàâäçéèêëîïôöùûüÿœæ']+")
_EN_WORDS = frozenset(
    "the and is are was to of for in on it my i we you this that with have has not can can't cannot "
    "please hi hello thanks thank regards from be at or but when since would could need help "
    "working doesn't don't won't isn't any our your me get".split()
)
_FR_WORDS = frozenset(
    "le les un une des du et est sont je j'ai nous vous il elle pas plus mes notre votre pour avec "
    "sur dans depuis merci bonjour cordialement svp au aux cette qui que fonctionne marche besoin "
    "mais très peux pouvez impossible ma mon de la ne".split()
) - {"la", "ne", "mon"}
_FR_ACCENTS = frozenset("éèêàâçùûôîœ")


def wordlist_sources(text: str | None) -> str | None:
    if not text or not text.strip():
        return None
    lowered = text.lower()
    words = _WORD_SOURCES.findall(lowered)
    english = sum(word in _EN_WORDS for word in words)
    french_words = [word for word in words if word in _FR_WORDS]
    accented = not _FR_ACCENTS.isdisjoint(lowered)
    evidence = len(set(french_words)) >= 2 or (accented and french_words)
    if evidence and len(french_words) + accented > english:
        return "fr"
    return "en"


_WORD_DRAFT = re.compile(r"[a-zà-öø-ÿ0-9]+", re.IGNORECASE)
_FRENCH_HINTS = frozenset(
    """le la les un une des du je ne pas mon ma mes est et sur pour avec dans que qui plus bonjour merci
    depuis impossible arrive marche fonctionne mot passe imprimer imprimante messagerie écran ordinateur
    n j d l qu c""".split()
)
_ENGLISH_HINTS = frozenset(
    """the a an i my is to and of in on for with not can cannot it this please hi hello thanks from when
    have does doesn don t working work keeps since""".split()
)


def wordlist_draft(text: str) -> str:
    tokens = [unicodedata.normalize("NFC", t) for t in _WORD_DRAFT.findall(text.lower())]
    french = sum(token in _FRENCH_HINTS for token in tokens) + 2 * sum(c in "éèêàçù" for c in text.lower())
    english = sum(token in _ENGLISH_HINTS for token in tokens)
    return "fr" if french > english else "en"


# -----------------------------------------------------------------------------------------------


def timed(detect: Callable[[str], str | None], texts: list[str], repeat: int = 3) -> tuple[list, float]:
    """Predictions and the best-of-``repeat`` time per text in µs."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        predictions = [detect(text) for text in texts]
        best = min(best, time.perf_counter() - start)
    return predictions, best / len(texts) * 1e6


def accuracy(
    truth: list[str], predicted: list[str | None], keep: Callable[[str], bool] = lambda _: True
) -> float:
    pairs = [(t, p) for t, p in zip(truth, predicted, strict=True) if keep(t)]
    return sum(t == p for t, p in pairs) / len(pairs)


def read_shared(rows: int) -> list[str]:
    import csv

    with gzip.open(SHARED, "rt", encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        return [row["text"] for _, row in zip(range(rows), reader, strict=False)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared-rows", type=int, default=38_269, help="rows of the shared dataset to label")
    args = parser.parse_args()

    process = psutil.Process()
    rss_before = process.memory_info().rss
    start = time.perf_counter()
    from ticket_assets.core import language as core

    detector = core._detector()
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    for lang in ("en", "fr", "de", "es"):  # the first text of each language loads its model
        core.detect_language(SENTENCES[lang][0])
    first_calls_s = time.perf_counter() - start
    rss_loaded = process.memory_info().rss

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    print(f"lingua: build {build_s * 1e3:.0f} ms, first call per language (model load) {first_calls_s:.2f} s "
          f"in total, RSS +{(rss_loaded - rss_before) / 2**20:.0f} MB (import + four models)")  # fmt: skip

    data = samples()
    truth = [lang for lang, _, _ in data]
    texts = [text for _, _, text in data]
    shapes = [shape for _, shape, _ in data]
    detectors = {
        "lingua (shipped)": core.detect_language,
        "wordlist (sources)": wordlist_sources,
        "wordlist (draft)": wordlist_draft,
    }
    print(f"\nhand-written samples: {len(data)} ({Counter(truth)['en']} per language: "
          "20 subjects, 20 sentences, 20 messages)")  # fmt: skip
    print("| detector | accuracy, all | EN/FR only | subjects | sentences | messages | µs/text |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    timings = {}
    for name, detect in detectors.items():
        predicted, us = timed(detect, texts)
        timings[name] = us
        by_shape = []
        for shape in ("subject", "sentence", "message"):
            rows = [i for i, s in enumerate(shapes) if s == shape]
            by_shape.append(accuracy([truth[i] for i in rows], [predicted[i] for i in rows]))
        print(f"| {name} | {accuracy(truth, predicted):.3f} | "
              f"{accuracy(truth, predicted, lambda t: t in ('en', 'fr')):.3f} | "
              + " | ".join(f"{a:.3f}" for a in by_shape) + f" | {us:.1f} |")  # fmt: skip
    start = time.perf_counter()
    batch = core.detect_languages(texts)
    batch_us = (time.perf_counter() - start) / len(texts) * 1e6
    assert batch == [core.detect_language(t) for t in texts]
    print(f"lingua in batch (detect_languages, worker threads): {batch_us:.1f} µs/text")
    wrong = [
        (t, p, x)
        for t, p, x in zip(truth, [core.detect_language(x) for x in texts], texts, strict=True)
        if t != p
    ]
    for t, p, x in wrong:
        print(f"  lingua wrong: {t} -> {p}: {x!r}")

    confidences = [detector.compute_language_confidence_values(t[: core.MAX_CHARS]) for t in texts]
    shared: list[str] = []
    shared_conf: list = []
    if SHARED.exists():
        shared = read_shared(args.shared_rows)
        print(f"\nshared IT-service dataset: {len(shared)} rows (lower-cased keyword English)")
        print("| detector | rows labelled en | other labels | µs/text |")
        print("| --- | --- | --- | --- |")
        lingua_us = 0.0
        for name, detect in detectors.items():
            predicted, us = timed(detect, shared, repeat=1)
            counts = Counter(predicted)
            others = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items(), key=str) if k != "en") or "none"
            print(f"| {name} | {counts['en']} | {others} | {us:.1f} |")
            if name.startswith("lingua"):
                lingua_us = us
        start = time.perf_counter()
        core.detect_languages(shared)
        print(f"lingua in batch on the shared rows: {(time.perf_counter() - start) / len(shared) * 1e6:.1f} µs/text "
              f"(single calls {lingua_us:.1f})")  # fmt: skip
        shared_conf = [detector.compute_language_confidence_values(t[: core.MAX_CHARS]) for t in shared]
    else:
        print(f"\nshared dataset not found at {SHARED}: skipped")

    def decide(values, threshold: float) -> str | None:
        best = values[0]
        if best.value == 0.0:
            return None
        code = core._CODES[best.language]
        return code if code == "en" or best.value >= threshold else "en"

    print("\nconfidence threshold for a non-English answer (shipped: "
          f"{core.MIN_CONFIDENCE}):")  # fmt: skip
    print("| threshold | samples accuracy | subjects | shared rows labelled non-English |")
    print("| --- | --- | --- | --- |")
    for threshold in (0.0, 0.5, 0.6, 0.7, 0.8, 0.9):
        predicted = [decide(c, threshold) for c in confidences]
        subjects = [i for i, s in enumerate(shapes) if s == "subject"]
        non_en = sum(decide(c, threshold) != "en" for c in shared_conf) if shared_conf else "n/a"
        print(f"| {threshold} | {accuracy(truth, predicted):.3f} | "
              f"{accuracy([truth[i] for i in subjects], [predicted[i] for i in subjects]):.3f} | {non_en} |")  # fmt: skip
    if SHARED.exists():
        # Whole import read (parse, repair, checks, language) of the shared file, then the same
        # read with the old word-list detector swapped in: what lingua costs an import.
        from ticket_assets.sources import csv_import

        mapping = csv_import.ColumnMapping(text_col="text", topic_col="topic", id_col="ticket_id")
        start = time.perf_counter()
        batch = csv_import.read_csv_tickets(SHARED, mapping)
        lingua_s = time.perf_counter() - start
        shipped = csv_import.detect_languages
        csv_import.detect_languages = lambda texts: [wordlist_sources(t) for t in texts]
        try:
            start = time.perf_counter()
            csv_import.read_csv_tickets(SHARED, mapping)
            wordlist_s = time.perf_counter() - start
        finally:
            csv_import.detect_languages = shipped
        print(f"\nread_csv_tickets on the shared file ({batch.valid.height} tickets): {lingua_s:.1f} s with lingua, "
              f"{wordlist_s:.1f} s with the word list ({lingua_s / wordlist_s:.1f}x); repaired {batch.repaired}, "
              f"encoding {batch.encoding}, delimiter {batch.delimiter!r}")  # fmt: skip

    print(f"\nratio lingua / wordlist (sources) time per text on samples: "
          f"{timings['lingua (shipped)'] / timings['wordlist (sources)']:.0f}x")  # fmt: skip


if __name__ == "__main__":
    main()
