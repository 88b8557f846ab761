"""Phrasebook for the synthetic ticket generator: templates, slot fillers and urgency cues.

Kept apart from the sampling code so the wording can grow without touching the mechanics.
Templates are ``(title, body)`` pairs sharing slots, so a title never contradicts its body.
Product slots (mail, VPN, storage ...) are the ones the ``vocabulary_shift`` scenario swaps.
Fillers are written for mid-sentence use; the generator capitalises the first letter.
"""

from __future__ import annotations

Template = tuple[str, str]

# --- topics ---------------------------------------------------------------------------------

# Mildly imbalanced, as in real help desks: passwords and hardware dominate.
BASE_TOPIC_WEIGHTS: dict[str, float] = {
    "access_password": 0.14,
    "hardware": 0.13,
    "email_calendar": 0.11,
    "vpn_network": 0.10,
    "software_install": 0.10,
    "printer": 0.07,
    "hr_onboarding": 0.07,
    "storage": 0.06,
    "purchase": 0.06,
    "meeting_room_av": 0.06,
    "security_phishing": 0.05,
    "admin_rights": 0.05,
}

# P(low, medium, high, critical | topic): phishing skews urgent, purchases rarely are.
TOPIC_URGENCY: dict[str, tuple[float, float, float, float]] = {
    "access_password": (0.15, 0.40, 0.35, 0.10),
    "hardware": (0.25, 0.40, 0.25, 0.10),
    "email_calendar": (0.25, 0.40, 0.25, 0.10),
    "vpn_network": (0.10, 0.35, 0.35, 0.20),
    "software_install": (0.45, 0.40, 0.12, 0.03),
    "printer": (0.40, 0.40, 0.15, 0.05),
    "hr_onboarding": (0.35, 0.40, 0.20, 0.05),
    "storage": (0.25, 0.40, 0.25, 0.10),
    "purchase": (0.60, 0.30, 0.08, 0.02),
    "meeting_room_av": (0.20, 0.35, 0.30, 0.15),
    "security_phishing": (0.05, 0.20, 0.40, 0.35),
    "admin_rights": (0.35, 0.40, 0.20, 0.05),
    "mfa_rollout": (0.10, 0.40, 0.35, 0.15),
}

TEMPLATES_EN: dict[str, list[Template]] = {
    "access_password": [
        (
            "Password reset needed",
            "I forgot my password and now my {sso} account is locked after too many attempts.",
        ),
        (
            "Account locked out",
            "My account got locked this morning, probably because my phone still had the old password saved. I can't sign in to {sso}.",
        ),
        (
            "Password expired - cannot log in",
            "My password expired over the weekend and the reset page gives {error}.",
        ),
        (
            "Can't access {erp_app}",
            "I can sign in to my laptop but {erp_app} says my account has no access. I had access last week.",
        ),
        (
            "Reset password for {erp_app}",
            "Could you reset my {erp_app} password? The self-service reset link never arrives in my inbox.",
        ),
        (
            "Login problem",
            "When I log in to {sso} it says the username or password is incorrect, but I'm sure it's right.",
        ),
    ],
    "hardware": [
        (
            "{laptop_model} won't turn on",
            "My {laptop_model} doesn't power on anymore, even when plugged in. The charging light blinks orange.",
        ),
        ("Broken {device}", "My {device} stopped working after I moved desks. Could someone have a look?"),
        (
            "Screen flickering",
            "The screen of my {laptop_model} flickers constantly and sometimes goes black.",
        ),
        (
            "Laptop slow and overheating",
            "My {laptop_model} is extremely slow and the fan is loud all the time.",
        ),
        (
            "Docking station issue",
            "When I plug my {laptop_model} into the docking station the external monitors stay black.",
        ),
        (
            "Need a replacement {device}",
            "My {device} is damaged after a coffee spill and needs to be replaced.",
        ),
    ],
    "email_calendar": [
        (
            "{mail_app} not syncing",
            "{mail_app} stopped receiving new emails since yesterday afternoon. Sent items still go out.",
        ),
        (
            "Calendar invites not showing",
            "Meeting invites don't appear in my {calendar} anymore, I only see them as emails.",
        ),
        ("Access to shared mailbox", "I need access to {mailbox} in {mail_app}; my manager has approved it."),
        ("Mailbox full", "{mail_app} says my mailbox is full and I can't send anything."),
        (
            "Emails going to junk",
            "Emails from an important client end up in junk in {mail_app} and some never arrive.",
        ),
        ("Can't open attachments", "Attachments in {mail_app} won't open, I get {error}."),
    ],
    "vpn_network": [
        ("VPN not connecting", "{vpn_client} fails to connect from home with {error}."),
        (
            "VPN keeps dropping",
            "{vpn_client} disconnects every few minutes, so I lose my session in {erp_app}.",
        ),
        (
            "No internet at my desk",
            "The wired connection at my desk in {area} shows 'no internet' while wifi works.",
        ),
        ("Wifi very slow", "The office wifi is extremely slow in {area}, pages take a minute to load."),
        (
            "Internal sites unreachable over VPN",
            "I'm connected to {vpn_client} but the intranet and {erp_app} time out.",
        ),
        (
            "Network drives unreachable",
            "Since this morning I can't reach the network drives; the file server times out.",
        ),
    ],
    "software_install": [
        ("Install {software}", "Please install {software} on my laptop, I need it for a project."),
        (
            "Request: {software}",
            "Could I get {software} installed? It is not available in the Software Center.",
        ),
        ("{software} crashes on start", "{software} crashes every time I open it since the last update."),
        (
            "Update {software}",
            "I need {software} updated to the latest version, the current one can't open files from our partner.",
        ),
        (
            "Licence expired for {software}",
            "{software} says my licence has expired and I can't open anything.",
        ),
    ],
    "printer": [
        ("Printer problem", "{printer} {printer_issue}."),
        (
            "Cannot print",
            "I can't print to {printer}; the job disappears from the queue but nothing comes out.",
        ),
        ("Add printer to my laptop", "Could you add {printer} to my laptop? It doesn't show up in the list."),
        (
            "Scan to email not working",
            "Scan-to-email on {printer} stopped working, scans never reach my inbox.",
        ),
        ("Toner empty", "{printer} is out of toner and there is no spare cartridge in the cupboard."),
    ],
    "hr_onboarding": [
        (
            "New starter setup",
            "We have {new_hire} in our team. They need a laptop, an email account and access to {erp_app}.",
        ),
        (
            "Onboarding request",
            "Please prepare accounts and equipment for {new_hire}: laptop, {mail_app} mailbox, badge.",
        ),
        (
            "Leaver - disable accounts",
            "An employee in our team leaves on Friday. Please disable their accounts and collect the laptop.",
        ),
        ("Access for new employee", "{new_hire} will need access to {erp_app} and {share}."),
        (
            "Employee changing department",
            "A colleague is moving to another department and needs their access updated in {erp_app}.",
        ),
    ],
    "storage": [
        ("Access to {share}", "I need read/write access to {share} for my new role."),
        (
            "Deleted files by mistake",
            "I accidentally deleted a folder on {storage_app} yesterday. Can it be restored from backup?",
        ),
        ("{storage_app} not syncing", "{storage_app} shows a red sync error and my files aren't uploading."),
        ("Storage quota exceeded", "I get a quota warning on {storage_app} and can't save new files."),
        (
            "New shared folder",
            "Could you create a shared folder on {storage_app} for our team, with access for 6 people?",
        ),
    ],
    "purchase": [
        ("Purchase request: {item}", "I'd like to order {item}. My manager has approved the budget."),
        ("Quote for {item}", "Can you get a quote for {item}? We need it for the team."),
        ("Order status", "What's the status of my order for {item}? It was approved two weeks ago."),
        ("Hardware request", "Requesting {item} for my home office."),
        ("Software licence purchase", "We need to buy licences for {software} for 5 people in our team."),
    ],
    "meeting_room_av": [
        ("{room}: screen not working", "The display in {room} shows 'no signal' when we connect a laptop."),
        (
            "Problem with {av_device}",
            "{av_device} in {room} isn't working, remote participants can't hear us.",
        ),
        ("Video call issue in {room}", "We can't start a {meeting_app} meeting from the console in {room}."),
        (
            "AV support for an event",
            "We have an all-hands in {room} next week and need help setting up {av_device}.",
        ),
    ],
    "security_phishing": [
        ("Suspicious email", "I received {phishing}. I haven't clicked anything. Should I delete it?"),
        (
            "I clicked a phishing link",
            "I think I clicked on {phishing} and typed my password before I realised.",
        ),
        (
            "Possible virus",
            "My antivirus showed a warning about a threat in my Downloads folder and now the laptop behaves strangely.",
        ),
        ("Report phishing", "Several people in our team received {phishing}. Forwarding it for analysis."),
        (
            "Lost laptop",
            "My laptop was stolen from my car last night. It had access to {mail_app} and {erp_app}.",
        ),
    ],
    "admin_rights": [
        ("Admin rights request", "I need temporary local admin rights to {admin_task}."),
        ("Elevated access", "Could you grant me administrator access on my laptop? I need to {admin_task}."),
        ("Install blocked by UAC", "Windows asks for an admin password when I try to {admin_task}."),
        ("Developer machine admin", "As a developer I regularly need admin rights to {admin_task}."),
    ],
    "mfa_rollout": [
        (
            "MFA enrolment problem",
            "I'm trying to enrol in the new multi-factor authentication with {mfa_app} but {mfa_issue}.",
        ),
        ("MFA not working", "Since the MFA rollout I can't log in: {mfa_issue}."),
        ("New phone - MFA", "I changed phones and now {mfa_app} is gone, so I can't approve sign-ins."),
        (
            "MFA prompts I didn't trigger",
            "I keep getting MFA push requests from {mfa_app} that I didn't trigger.",
        ),
        ("Help with 2FA setup", "The mandatory 2FA deadline is close and {mfa_issue}."),
    ],
}

TEMPLATES_FR: dict[str, list[Template]] = {
    "access_password": [
        ("Mot de passe oublié", "J'ai oublié mon mot de passe et mon compte {sso} est bloqué."),
        (
            "Compte verrouillé",
            "Mon compte est verrouillé depuis ce matin, je ne peux pas me connecter à {erp_app}.",
        ),
        (
            "Mot de passe expiré",
            "Mon mot de passe a expiré et la page de réinitialisation affiche l'erreur {error}.",
        ),
    ],
    "hardware": [
        (
            "{laptop_model} ne démarre plus",
            "Mon {laptop_model} ne s'allume plus, même branché sur le secteur.",
        ),
        ("Matériel en panne", "Mon {device} ne fonctionne plus depuis que j'ai changé de bureau."),
        ("Écran qui clignote", "L'écran de mon {laptop_model} clignote et devient noir de temps en temps."),
    ],
    "email_calendar": [
        ("{mail_app} ne reçoit plus de mails", "{mail_app} ne reçoit plus de nouveaux messages depuis hier."),
        (
            "Accès boîte partagée",
            "J'ai besoin d'un accès à {mailbox} dans {mail_app}, mon responsable est d'accord.",
        ),
        ("Invitations calendrier", "Les invitations n'apparaissent plus dans mon calendrier {mail_app}."),
    ],
    "vpn_network": [
        ("VPN ne se connecte pas", "{vpn_client} ne se connecte pas depuis la maison, erreur {error}."),
        (
            "Wifi très lent",
            "Le wifi du bureau est très lent dans {area}, impossible de travailler correctement.",
        ),
        ("VPN coupe souvent", "{vpn_client} se déconnecte toutes les cinq minutes."),
    ],
    "software_install": [
        (
            "Installation de {software}",
            "Merci d'installer {software} sur mon poste, j'en ai besoin pour un projet.",
        ),
        (
            "{software} plante au démarrage",
            "{software} plante à chaque ouverture depuis la dernière mise à jour.",
        ),
        (
            "Licence {software} expirée",
            "La licence de {software} a expiré, je ne peux plus ouvrir mes fichiers.",
        ),
    ],
    "printer": [
        (
            "Problème d'imprimante",
            "Impossible d'imprimer sur {printer}, le document reste bloqué dans la file.",
        ),
        ("Plus de toner", "{printer} n'a plus de toner et il n'y a pas de cartouche de rechange."),
        ("Ajouter une imprimante", "Pouvez-vous ajouter {printer} sur mon portable ?"),
    ],
    "hr_onboarding": [
        (
            "Arrivée d'un nouveau collaborateur",
            "Nous accueillons {new_hire}. Il faut un portable, une adresse mail et un accès à {erp_app}.",
        ),
        (
            "Départ d'un collaborateur",
            "Un collaborateur quitte l'entreprise vendredi, merci de désactiver ses comptes.",
        ),
        (
            "Préparation du poste",
            "Merci de préparer les accès pour {new_hire} : portable, boîte {mail_app}, badge.",
        ),
    ],
    "storage": [
        ("Accès au dossier partagé", "J'ai besoin d'un accès en écriture sur {share}."),
        (
            "Fichiers supprimés par erreur",
            "J'ai supprimé un dossier sur {storage_app} par erreur hier, est-il possible de le restaurer ?",
        ),
        (
            "{storage_app} ne synchronise plus",
            "{storage_app} affiche une erreur de synchronisation et mes fichiers ne sont pas envoyés.",
        ),
    ],
    "purchase": [
        ("Demande d'achat : {item}", "Je souhaite commander {item}. Mon responsable a validé le budget."),
        ("Devis pour {item}", "Pouvez-vous obtenir un devis pour {item} ?"),
        ("Suivi de commande", "Où en est ma commande ({item}) ? Elle a été validée il y a deux semaines."),
    ],
    "meeting_room_av": [
        (
            "Écran en panne - {room}",
            "L'écran de {room} affiche « pas de signal » quand on branche un portable.",
        ),
        (
            "Problème de son en réunion",
            "{av_device} de {room} ne fonctionne pas, les participants à distance ne nous entendent pas.",
        ),
    ],
    "security_phishing": [
        ("Mail suspect", "J'ai reçu {phishing}. Je n'ai rien ouvert. Que dois-je faire ?"),
        (
            "J'ai cliqué sur un lien de phishing",
            "Je pense avoir cliqué sur {phishing} et saisi mon mot de passe.",
        ),
        ("Ordinateur volé", "Mon ordinateur portable a été volé hier soir, il avait accès à {mail_app}."),
    ],
    "admin_rights": [
        (
            "Demande de droits administrateur",
            "J'ai besoin de droits administrateur temporaires pour {admin_task}.",
        ),
        (
            "Droits admin sur mon poste",
            "Windows me demande un mot de passe administrateur pour {admin_task}.",
        ),
    ],
    "mfa_rollout": [
        (
            "Problème d'enrôlement MFA",
            "J'essaie de m'enrôler dans la double authentification avec {mfa_app} mais {mfa_issue}.",
        ),
        ("MFA ne fonctionne pas", "Depuis le déploiement du MFA je ne peux plus me connecter : {mfa_issue}."),
    ],
}

# --- slot fillers ---------------------------------------------------------------------------

# Product names: the vocabulary_shift scenario replaces these after its start date.
PRODUCTS: dict[str, list[str]] = {
    "mail_app": ["Outlook", "Outlook on the web"],
    "calendar": ["Outlook calendar"],
    "vpn_client": ["Cisco AnyConnect", "AnyConnect"],
    "storage_app": ["OneDrive", "SharePoint"],
    "meeting_app": ["Teams", "Skype for Business"],
    "sso": ["Windows", "Active Directory"],
}

SLOTS_EN: dict[str, list[str]] = {
    "erp_app": ["SAP", "Workday", "Salesforce", "Jira", "Confluence", "ServiceNow", "Concur"],
    "error": [
        "error 0x800704cf",
        "error 809",
        "a certificate error",
        "'Access denied'",
        "'Something went wrong, code 500'",
        "'The trust relationship with the domain failed'",
    ],
    "laptop_model": [
        "ThinkPad T14",
        "Dell Latitude 7440",
        "HP EliteBook 840",
        "MacBook Pro",
        "Surface Laptop 5",
    ],
    "device": [
        "second monitor",
        "keyboard",
        "mouse",
        "headset",
        "webcam",
        "docking station",
        "laptop charger",
    ],
    "mailbox": ["the shared mailbox support@", "the accounts-payable mailbox", "the sales team mailbox"],
    "area": ["the east wing", "building B", "the 4th floor", "the open space", "the cafeteria"],
    "software": [
        "Python 3.12",
        "Visual Studio Code",
        "Adobe Acrobat Pro",
        "Tableau Desktop",
        "Docker Desktop",
        "Power BI Desktop",
        "Notepad++",
        "RStudio",
        "AutoCAD",
        "7-Zip",
    ],
    "printer": [
        "the printer on the 3rd floor",
        "the HP LaserJet near reception",
        "the big Canon copier",
        "the colour printer in room 2.14",
        "the label printer in the warehouse",
    ],
    "printer_issue": [
        "keeps jamming",
        "prints blank pages",
        "shows as offline",
        "prints everything with grey streaks",
        "is stuck with 40 jobs in the queue",
    ],
    "new_hire": [
        "a new hire starting on Monday",
        "an intern joining next week",
        "a contractor starting on the 1st",
    ],
    "share": [r"\\fs01\finance", "the Marketing share", "the project folder", "the Legal contracts folder"],
    "item": [
        "a 27-inch monitor",
        "a laptop for a new team member",
        "an ergonomic keyboard",
        "a USB-C dock",
        "a noise-cancelling headset",
        "two iPhones for the field team",
    ],
    "room": ["Room Atlas", "the boardroom", "meeting room 4B", "the training room", "Room Everest"],
    "av_device": [
        "the projector",
        "the conference speakerphone",
        "the ceiling microphone",
        "the room display",
    ],
    "phishing": [
        "an email asking me to confirm my payroll details",
        "a message pretending to be the CEO asking for gift cards",
        "a fake DocuSign link",
        "an invoice attachment from an unknown supplier",
        "a text asking for my login code",
    ],
    "admin_task": [
        "install a printer driver",
        "update the BIOS",
        "run a script that needs elevation",
        "install a VPN certificate",
        "change the network adapter settings",
    ],
    "mfa_app": ["Microsoft Authenticator", "the authenticator app", "Okta Verify"],
    "mfa_issue": [
        "the push notification never arrives",
        "it asks for a number I can't see",
        "I got a new phone and lost my authenticator",
        "the enrolment QR code doesn't scan",
        "it says my token is out of sync",
    ],
}

SLOTS_FR: dict[str, list[str]] = {
    **SLOTS_EN,
    "device": ["second écran", "clavier", "casque", "dock", "chargeur"],
    "error": ["0x800704cf", "809", "« Accès refusé »", "de certificat"],
    "mailbox": [
        "la boîte partagée support@",
        "la boîte de la comptabilité fournisseurs",
        "la boîte commerciale",
    ],
    "area": ["l'aile est", "le bâtiment B", "l'open space", "la cafétéria"],
    "printer": [
        "l'imprimante du 3e étage",
        "la photocopieuse Canon de l'accueil",
        "l'imprimante couleur de la salle 2.14",
    ],
    "new_hire": ["un nouveau collaborateur qui arrive lundi", "une stagiaire la semaine prochaine"],
    "share": [r"\\fs01\finance", "le dossier partagé Marketing", "le dossier du projet"],
    "item": [
        "un écran 27 pouces",
        "un portable pour un nouvel arrivant",
        "un clavier ergonomique",
        "un casque",
    ],
    "room": ["la salle Atlas", "la salle du conseil", "la salle 4B"],
    "av_device": ["le projecteur", "la pieuvre de conférence", "le micro"],
    "phishing": [
        "un mail me demandant de confirmer mes coordonnées bancaires",
        "un faux lien DocuSign",
        "une fausse facture en pièce jointe",
    ],
    "admin_task": [
        "installer un pilote d'imprimante",
        "mettre à jour le BIOS",
        "installer un certificat VPN",
    ],
    "mfa_issue": [
        "la notification n'arrive jamais",
        "j'ai changé de téléphone et perdu mon authentificateur",
        "le QR code ne se scanne pas",
    ],
}

# --- surrounding phrases ----------------------------------------------------------------------

OPENERS = {
    "en": ["Hi,", "Hello,", "Hi team,", "Good morning,", "Hello IT,", "Dear Service Desk,", "Hey,"],
    "fr": ["Bonjour,", "Bonjour à tous,", "Bonjour l'équipe IT,", "Salut,"],
}
# Introductions carry the requester's name and department: names are drawn independently of the topic.
INTRODUCTIONS = {
    "en": [
        "Hi, this is {name} from {dept}.",
        "Hello, {name} here from {dept}.",
        "My name is {name} ({dept}).",
    ],
    "fr": ["Bonjour, c'est {name} du service {dept}.", "Bonjour, {name} ({dept}) ici."],
}
PHONE_INTRO = {"en": "Phone call from {name} ({dept}):", "fr": "Appel de {name} ({dept}) :"}
CLOSERS = {
    "en": [
        "Thanks!",
        "Thanks in advance.",
        "Thank you.",
        "Best regards,",
        "Kind regards,",
        "Cheers,",
        "Regards,",
    ],
    "fr": ["Merci d'avance.", "Merci !", "Cordialement,", "Bonne journée,"],
}

# Urgency is carried by the wording: impact, outages, deadlines. Index = URGENCY_LEVELS position.
URGENCY_CUES = {
    "en": [
        [
            "No rush on this.",
            "Whenever you have time is fine.",
            "Not urgent at all.",
            "It's not blocking me, I can work around it.",
            "Low priority, next week is fine.",
            "Just a minor annoyance.",
        ],
        [
            "It would be good to get this sorted this week.",
            "It's slowing me down a bit.",
            "I can still work but it's inconvenient.",
            "Could you look at it sometime today?",
            "There is a workaround but it's tedious.",
        ],
        [
            "This is blocking my work.",
            "I can't do my job until this is fixed.",
            "A few colleagues in my team have the same problem.",
            "I have a client presentation this afternoon and need this working.",
            "Please treat this as high priority.",
            "I'm stuck and can't continue with my tasks.",
        ],
        [
            "The whole department is affected and nobody can work!",
            "This is an outage: all users on the floor are impacted.",
            "URGENT - customers are impacted right now.",
            "Production is down because of this.",
            "Our entire team of 40 people is blocked.",
            "The board meeting starts in 30 minutes and we need this fixed immediately.",
        ],
    ],
    "fr": [
        ["Rien d'urgent.", "Quand vous aurez le temps.", "Pas pressé, je peux contourner le problème."],
        [
            "Ce serait bien de régler ça cette semaine.",
            "Ça me ralentit un peu.",
            "Pouvez-vous regarder aujourd'hui ?",
        ],
        [
            "Cela bloque mon travail.",
            "Je ne peux pas travailler tant que ce n'est pas réglé.",
            "Plusieurs collègues ont le même problème.",
        ],
        [
            "Tout le service est à l'arrêt, personne ne peut travailler !",
            "URGENT - les clients sont impactés en ce moment.",
            "C'est une panne générale sur tout l'étage.",
        ],
    ],
}
# Ticket-specific details ({n5}/{n4}: zero-padded numbers, {hh}:{mm}: a time). Real tickets carry
# asset tags, times and extensions; without them short texts would repeat by chance at scale.
DETAILS = {
    "en": [
        "Asset tag: LT-{n5}.",
        "It started around {hh}:{mm}.",
        "My extension is {n4}.",
        "I'm at desk {n4} if someone needs to come by.",
        "Serial number ends in {n5}.",
        "First noticed at {hh}:{mm} today.",
    ],
    "fr": [
        "Numéro d'inventaire : LT-{n5}.",
        "Ça a commencé vers {hh}h{mm}.",
        "Mon poste téléphonique : {n4}.",
        "Je suis au bureau {n4}.",
    ],
}
TITLE_PREFIXES = ["URGENT: ", "[P1] ", "Outage - "]  # added to some critical titles
VIP_CUES = {
    "en": [
        "I'm writing on behalf of the CEO.",
        "This is for the CFO's laptop.",
        "Asking for our VP of Sales.",
    ],
    "fr": ["J'écris de la part du directeur général.", "C'est pour l'ordinateur de la DAF."],
}
FOLLOW_UPS = {
    "en": ["Following up on my earlier ticket:", "Sorry, sending this again:", "Still not fixed:"],
    "fr": ["Je relance ma demande :", "Toujours pas résolu :"],
}

# --- requesters -------------------------------------------------------------------------------

FIRST_NAMES = [
    "Marie", "Lucas", "Aisha", "John", "Sofia", "Mateo", "Yuki", "Omar", "Emma", "Liam", "Chloé", "Arjun",
    "Fatima", "Noah", "Ingrid", "Kwame", "Elena", "Tomás", "Mei", "David", "Priya", "Hugo", "Zara", "Pavel",
    "Amara", "Jonas", "Leila", "Samuel", "Hana", "Diego", "Nadia", "Oscar", "Grace", "Malik", "Julia", "Ravi",
]  # fmt: skip
LAST_NAMES = [
    "Dubois", "Smith", "Okafor", "Müller", "García", "Tanaka", "Haddad", "Johansson", "Rossi", "Nguyen",
    "Kowalski", "Martin", "Patel", "Silva", "Kim", "Bernard", "O'Brien", "Novak", "Chen", "Mensah",
    "Lefebvre", "Andersen", "Costa", "Ibrahim", "Fischer", "Moreau", "Singh", "Lopez", "Petrov", "Walker",
]  # fmt: skip
DEPARTMENTS: dict[str, float] = {
    "Engineering": 0.18,
    "Sales": 0.16,
    "Customer Support": 0.14,
    "Finance": 0.12,
    "Operations": 0.10,
    "Marketing": 0.09,
    "HR": 0.07,
    "Legal": 0.04,
    "Procurement": 0.04,
    "IT": 0.04,
    "Executive Office": 0.02,
}
CHANNELS = ["email", "portal", "phone", "chat"]
# P(channel | urgency): the more urgent, the more people pick up the phone.
CHANNEL_BY_URGENCY = [
    (0.45, 0.42, 0.05, 0.08),
    (0.42, 0.38, 0.08, 0.12),
    (0.35, 0.27, 0.18, 0.20),
    (0.25, 0.15, 0.40, 0.20),
]

# --- escalation cases ------------------------------------------------------------------------

# Tickets whose wording must escalate whatever the topic's usual urgency (ml/escalation_rules.yaml):
# (rule, topic, urgency, language, title, body). The urgency is the rule's floor.
ESCALATION_CASES: list[tuple[str, str, str, str, str, str]] = [
    (
        "ransomware",
        "security_phishing",
        "critical",
        "en",
        "Ransomware on the finance share",
        "All files on the finance share are encrypted and every folder has a ransom note asking for bitcoin.",
    ),
    (
        "ransomware",
        "storage",
        "critical",
        "en",
        "Files encrypted, cannot open anything",
        "Since this morning my files were encrypted, they all end in .locked and a window says it is ransomware.",
    ),
    (
        "ransomware",
        "security_phishing",
        "critical",
        "fr",
        "Rançongiciel sur le serveur",
        "Tous les fichiers du serveur de fichiers sont chiffrés et un message demande une rançon.",
    ),
    (
        "credentials_phished",
        "security_phishing",
        "high",
        "en",
        "Entered my password on a phishing page",
        "I clicked a link in a phishing email and entered my password on the login page it opened.",
    ),
    (
        "credentials_phished",
        "access_password",
        "high",
        "en",
        "Fake sign-in page",
        "The email looked like it came from IT; it was a fake login page and I typed my password before I noticed.",
    ),
    (
        "credentials_phished",
        "security_phishing",
        "high",
        "fr",
        "Mot de passe saisi sur un faux site",
        "J'ai cliqué sur un lien d'un mail d'hameçonnage et j'ai saisi mon mot de passe sur la page.",
    ),
    (
        "outage",
        "vpn_network",
        "high",
        "en",
        "Site-wide network outage",
        "Nobody can connect: the whole office is down, no internet on any floor since 8:30.",
    ),
    (
        "outage",
        "email_calendar",
        "high",
        "en",
        "Mail outage for everyone",
        "Email is down for everyone in the company, all users cannot send or receive since the update.",
    ),
    (
        "outage",
        "vpn_network",
        "high",
        "fr",
        "Panne générale du réseau",
        "Panne générale : tout le bâtiment n'a plus d'accès au réseau, impossible de travailler.",
    ),
    (
        "data_loss",
        "storage",
        "high",
        "en",
        "Project folder wiped",
        "The project folder on the shared drive was emptied overnight; the files have been deleted and are gone.",
    ),
    (
        "data_loss",
        "storage",
        "high",
        "fr",
        "Perte de données sur le partage",
        "Perte de données : les fichiers du dossier commun ont été supprimés cette nuit.",
    ),
]
