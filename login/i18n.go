package login

import (
	"fmt"
	"html/template"
	"sort"
	"strconv"
	"strings"
)

// Locales are the languages of the prompt: those the SMS templates ship
// (templates/sms), so a user reads the page and the SMS in one language.
var Locales = []string{"de", "en", "es", "fr", "it", "nl", "pt", "pt-BR"}

// messages holds the prompt's text per locale; every locale has every key
// (TestCatalogComplete). Values are fmt formats.
var messages = map[string]map[string]string{
	"en": {
		"codeFormat":      "Enter the code from the SMS (at most 32 characters).",
		"title":           "Verify it's you",
		"heading":         "Enter the code we sent you",
		"sentTo":          "We sent a code by SMS to %s for %s.",
		"codeLabel":       "Verification code",
		"continue":        "Continue",
		"resend":          "Resend code",
		"send":            "Send a code",
		"resendIn":        "You can request a new code in %s seconds.",
		"resendNoScript":  "When the countdown has passed, reload this page to request a new code.",
		"resendsLeft":     "Resends left: %d.",
		"noResends":       "No more codes can be sent for this sign-in.",
		"noResendsBackup": "Use a backup code, or go back to %s and sign in again.",
		"noResendsAgain":  "Go back to %s and sign in again.",
		"useBackup":       "Use a backup code",
		"backupHeading":   "Enter a backup code",
		"backupIntro":     "Each backup code works once. No SMS is sent.",
		"backupLabel":     "Backup code",
		"useSMS":          "Use a code sent by SMS instead",
		"cancel":          "Cancel and go back to %s",
		"sent":            "A new code was sent.",
		"invalidCode":     "That code is not right. Attempts left: %d.",
		"expired":         "This code has expired. Request a new one.",
		"lockedOut":       "Too many wrong codes. Try again in %s minutes.",
		"rateLimited":     "Too many codes were sent to this number. Try again in %s minutes.",
		"unavailable":     "We could not send a code just now. Try again in a moment.",
		"busy":            "We are very busy just now. Try again in a moment.",
		"resendTooSoon":   "Please wait a little before requesting another code.",
		"backupDisabled":  "Backup codes are not available for this sign-in.",
		"badForm":         "This form has expired. Reload the page and try again.",
		"errorTitle":      "Sign-in problem",
		"flowExpired":     "This sign-in has expired or is no longer valid. Go back to the application and sign in again.",
		"badRequest":      "This sign-in request is not valid, so it cannot continue.",
		"internal":        "Something went wrong on our side. Try again in a moment.",
	},
	"fr": {
		"codeFormat":      "Saisissez le code reçu par SMS (32 caractères au plus).",
		"title":           "Confirmez votre identité",
		"heading":         "Saisissez le code que nous vous avons envoyé",
		"sentTo":          "Nous avons envoyé un code par SMS au %s pour %s.",
		"codeLabel":       "Code de vérification",
		"continue":        "Continuer",
		"resend":          "Renvoyer le code",
		"send":            "Envoyer un code",
		"resendIn":        "Vous pourrez demander un nouveau code dans %s secondes.",
		"resendNoScript":  "Une fois le délai écoulé, rechargez cette page pour demander un nouveau code.",
		"resendsLeft":     "Renvois restants : %d.",
		"noResends":       "Aucun autre code ne peut être envoyé pour cette connexion.",
		"noResendsBackup": "Utilisez un code de secours, ou revenez à %s pour vous reconnecter.",
		"noResendsAgain":  "Revenez à %s pour vous reconnecter.",
		"useBackup":       "Utiliser un code de secours",
		"backupHeading":   "Saisissez un code de secours",
		"backupIntro":     "Chaque code de secours ne fonctionne qu'une fois. Aucun SMS n'est envoyé.",
		"backupLabel":     "Code de secours",
		"useSMS":          "Utiliser plutôt un code reçu par SMS",
		"cancel":          "Annuler et revenir à %s",
		"sent":            "Un nouveau code a été envoyé.",
		"invalidCode":     "Ce code n'est pas correct. Tentatives restantes : %d.",
		"expired":         "Ce code a expiré. Demandez-en un nouveau.",
		"lockedOut":       "Trop de codes erronés. Réessayez dans %s minutes.",
		"rateLimited":     "Trop de codes ont été envoyés à ce numéro. Réessayez dans %s minutes.",
		"unavailable":     "Nous n'avons pas pu envoyer de code pour le moment. Réessayez dans un instant.",
		"busy":            "Nous sommes très sollicités en ce moment. Réessayez dans un instant.",
		"resendTooSoon":   "Patientez un peu avant de demander un autre code.",
		"backupDisabled":  "Les codes de secours ne sont pas disponibles pour cette connexion.",
		"badForm":         "Ce formulaire a expiré. Rechargez la page et réessayez.",
		"errorTitle":      "Problème de connexion",
		"flowExpired":     "Cette connexion a expiré ou n'est plus valide. Revenez à l'application pour vous reconnecter.",
		"badRequest":      "Cette demande de connexion n'est pas valide et ne peut pas continuer.",
		"internal":        "Un problème est survenu de notre côté. Réessayez dans un instant.",
	},
	"es": {
		"codeFormat":      "Introduce el código del SMS (32 caracteres como máximo).",
		"title":           "Confirma que eres tú",
		"heading":         "Introduce el código que te hemos enviado",
		"sentTo":          "Hemos enviado un código por SMS al %s para %s.",
		"codeLabel":       "Código de verificación",
		"continue":        "Continuar",
		"resend":          "Reenviar el código",
		"send":            "Enviar un código",
		"resendIn":        "Podrás pedir un código nuevo dentro de %s segundos.",
		"resendNoScript":  "Cuando termine la cuenta atrás, recarga esta página para pedir un código nuevo.",
		"resendsLeft":     "Reenvíos restantes: %d.",
		"noResends":       "No se pueden enviar más códigos para este inicio de sesión.",
		"noResendsBackup": "Usa un código de respaldo, o vuelve a %s e inicia sesión de nuevo.",
		"noResendsAgain":  "Vuelve a %s e inicia sesión de nuevo.",
		"useBackup":       "Usar un código de respaldo",
		"backupHeading":   "Introduce un código de respaldo",
		"backupIntro":     "Cada código de respaldo sirve una sola vez. No se envía ningún SMS.",
		"backupLabel":     "Código de respaldo",
		"useSMS":          "Usar en su lugar un código enviado por SMS",
		"cancel":          "Cancelar y volver a %s",
		"sent":            "Se ha enviado un código nuevo.",
		"invalidCode":     "El código no es correcto. Intentos restantes: %d.",
		"expired":         "El código ha caducado. Pide uno nuevo.",
		"lockedOut":       "Demasiados códigos incorrectos. Vuelve a intentarlo dentro de %s minutos.",
		"rateLimited":     "Se han enviado demasiados códigos a este número. Vuelve a intentarlo dentro de %s minutos.",
		"unavailable":     "No hemos podido enviar un código ahora mismo. Vuelve a intentarlo en un momento.",
		"busy":            "Estamos muy ocupados ahora mismo. Vuelve a intentarlo en un momento.",
		"resendTooSoon":   "Espera un poco antes de pedir otro código.",
		"backupDisabled":  "Los códigos de respaldo no están disponibles para este inicio de sesión.",
		"badForm":         "El formulario ha caducado. Recarga la página y vuelve a intentarlo.",
		"errorTitle":      "Problema al iniciar sesión",
		"flowExpired":     "Este inicio de sesión ha caducado o ya no es válido. Vuelve a la aplicación e inicia sesión de nuevo.",
		"badRequest":      "Esta solicitud de inicio de sesión no es válida y no puede continuar.",
		"internal":        "Algo ha fallado por nuestra parte. Vuelve a intentarlo en un momento.",
	},
	"de": {
		"codeFormat":      "Geben Sie den Code aus der SMS ein (höchstens 32 Zeichen).",
		"title":           "Bestätigen Sie Ihre Identität",
		"heading":         "Geben Sie den Code ein, den wir Ihnen gesendet haben",
		"sentTo":          "Wir haben per SMS einen Code an %s für %s gesendet.",
		"codeLabel":       "Bestätigungscode",
		"continue":        "Weiter",
		"resend":          "Code erneut senden",
		"send":            "Code senden",
		"resendIn":        "Sie können in %s Sekunden einen neuen Code anfordern.",
		"resendNoScript":  "Laden Sie diese Seite nach Ablauf der Wartezeit neu, um einen neuen Code anzufordern.",
		"resendsLeft":     "Verbleibende erneute Sendungen: %d.",
		"noResends":       "Für diese Anmeldung können keine weiteren Codes gesendet werden.",
		"noResendsBackup": "Verwenden Sie einen Backup-Code oder kehren Sie zu %s zurück und melden Sie sich erneut an.",
		"noResendsAgain":  "Kehren Sie zu %s zurück und melden Sie sich erneut an.",
		"useBackup":       "Backup-Code verwenden",
		"backupHeading":   "Backup-Code eingeben",
		"backupIntro":     "Jeder Backup-Code funktioniert nur einmal. Es wird keine SMS gesendet.",
		"backupLabel":     "Backup-Code",
		"useSMS":          "Stattdessen einen per SMS gesendeten Code verwenden",
		"cancel":          "Abbrechen und zu %s zurückkehren",
		"sent":            "Ein neuer Code wurde gesendet.",
		"invalidCode":     "Dieser Code ist nicht richtig. Verbleibende Versuche: %d.",
		"expired":         "Dieser Code ist abgelaufen. Fordern Sie einen neuen an.",
		"lockedOut":       "Zu viele falsche Codes. Versuchen Sie es in %s Minuten erneut.",
		"rateLimited":     "An diese Nummer wurden zu viele Codes gesendet. Versuchen Sie es in %s Minuten erneut.",
		"unavailable":     "Wir konnten gerade keinen Code senden. Versuchen Sie es gleich noch einmal.",
		"busy":            "Wir sind gerade stark ausgelastet. Versuchen Sie es gleich noch einmal.",
		"resendTooSoon":   "Bitte warten Sie kurz, bevor Sie einen weiteren Code anfordern.",
		"backupDisabled":  "Backup-Codes sind für diese Anmeldung nicht verfügbar.",
		"badForm":         "Dieses Formular ist abgelaufen. Laden Sie die Seite neu und versuchen Sie es erneut.",
		"errorTitle":      "Problem bei der Anmeldung",
		"flowExpired":     "Diese Anmeldung ist abgelaufen oder nicht mehr gültig. Kehren Sie zur Anwendung zurück und melden Sie sich erneut an.",
		"badRequest":      "Diese Anmeldeanfrage ist ungültig und kann nicht fortgesetzt werden.",
		"internal":        "Bei uns ist etwas schiefgelaufen. Versuchen Sie es gleich noch einmal.",
	},
	"it": {
		"codeFormat":      "Inserisci il codice dell'SMS (al massimo 32 caratteri).",
		"title":           "Conferma la tua identità",
		"heading":         "Inserisci il codice che ti abbiamo inviato",
		"sentTo":          "Abbiamo inviato un codice via SMS al %s per %s.",
		"codeLabel":       "Codice di verifica",
		"continue":        "Continua",
		"resend":          "Invia di nuovo il codice",
		"send":            "Invia un codice",
		"resendIn":        "Potrai richiedere un nuovo codice tra %s secondi.",
		"resendNoScript":  "Allo scadere del conto alla rovescia, ricarica questa pagina per richiedere un nuovo codice.",
		"resendsLeft":     "Reinvii rimasti: %d.",
		"noResends":       "Non è possibile inviare altri codici per questo accesso.",
		"noResendsBackup": "Usa un codice di backup, oppure torna a %s e accedi di nuovo.",
		"noResendsAgain":  "Torna a %s e accedi di nuovo.",
		"useBackup":       "Usa un codice di backup",
		"backupHeading":   "Inserisci un codice di backup",
		"backupIntro":     "Ogni codice di backup funziona una sola volta. Non viene inviato alcun SMS.",
		"backupLabel":     "Codice di backup",
		"useSMS":          "Usa invece un codice inviato via SMS",
		"cancel":          "Annulla e torna a %s",
		"sent":            "È stato inviato un nuovo codice.",
		"invalidCode":     "Il codice non è corretto. Tentativi rimasti: %d.",
		"expired":         "Il codice è scaduto. Richiedine uno nuovo.",
		"lockedOut":       "Troppi codici errati. Riprova tra %s minuti.",
		"rateLimited":     "Sono stati inviati troppi codici a questo numero. Riprova tra %s minuti.",
		"unavailable":     "Non è stato possibile inviare un codice in questo momento. Riprova tra poco.",
		"busy":            "Siamo molto occupati in questo momento. Riprova tra poco.",
		"resendTooSoon":   "Attendi un momento prima di richiedere un altro codice.",
		"backupDisabled":  "I codici di backup non sono disponibili per questo accesso.",
		"badForm":         "Il modulo è scaduto. Ricarica la pagina e riprova.",
		"errorTitle":      "Problema di accesso",
		"flowExpired":     "Questo accesso è scaduto o non è più valido. Torna all'applicazione e accedi di nuovo.",
		"badRequest":      "Questa richiesta di accesso non è valida e non può proseguire.",
		"internal":        "Si è verificato un problema da parte nostra. Riprova tra poco.",
	},
	"nl": {
		"codeFormat":      "Voer de code uit de sms in (hoogstens 32 tekens).",
		"title":           "Bevestig dat u het bent",
		"heading":         "Voer de code in die we u hebben gestuurd",
		"sentTo":          "We hebben per sms een code naar %s gestuurd voor %s.",
		"codeLabel":       "Verificatiecode",
		"continue":        "Doorgaan",
		"resend":          "Code opnieuw sturen",
		"send":            "Een code sturen",
		"resendIn":        "U kunt over %s seconden een nieuwe code aanvragen.",
		"resendNoScript":  "Laad deze pagina opnieuw als de wachttijd voorbij is om een nieuwe code aan te vragen.",
		"resendsLeft":     "Resterende keren opnieuw sturen: %d.",
		"noResends":       "Voor deze aanmelding kunnen geen codes meer worden gestuurd.",
		"noResendsBackup": "Gebruik een back-upcode, of ga terug naar %s en meld u opnieuw aan.",
		"noResendsAgain":  "Ga terug naar %s en meld u opnieuw aan.",
		"useBackup":       "Een back-upcode gebruiken",
		"backupHeading":   "Voer een back-upcode in",
		"backupIntro":     "Elke back-upcode werkt één keer. Er wordt geen sms gestuurd.",
		"backupLabel":     "Back-upcode",
		"useSMS":          "In plaats daarvan een code per sms gebruiken",
		"cancel":          "Annuleren en teruggaan naar %s",
		"sent":            "Er is een nieuwe code gestuurd.",
		"invalidCode":     "Die code klopt niet. Resterende pogingen: %d.",
		"expired":         "Deze code is verlopen. Vraag een nieuwe aan.",
		"lockedOut":       "Te veel onjuiste codes. Probeer het over %s minuten opnieuw.",
		"rateLimited":     "Er zijn te veel codes naar dit nummer gestuurd. Probeer het over %s minuten opnieuw.",
		"unavailable":     "We konden nu geen code sturen. Probeer het zo opnieuw.",
		"busy":            "We hebben het nu erg druk. Probeer het zo opnieuw.",
		"resendTooSoon":   "Wacht even voordat u een nieuwe code aanvraagt.",
		"backupDisabled":  "Back-upcodes zijn niet beschikbaar voor deze aanmelding.",
		"badForm":         "Dit formulier is verlopen. Laad de pagina opnieuw en probeer het nog eens.",
		"errorTitle":      "Probleem bij aanmelden",
		"flowExpired":     "Deze aanmelding is verlopen of niet meer geldig. Ga terug naar de applicatie en meld u opnieuw aan.",
		"badRequest":      "Dit aanmeldverzoek is ongeldig en kan niet doorgaan.",
		"internal":        "Er ging bij ons iets mis. Probeer het zo opnieuw.",
	},
	"pt": {
		"codeFormat":      "Introduza o código do SMS (no máximo 32 caracteres).",
		"title":           "Confirme que é você",
		"heading":         "Introduza o código que lhe enviámos",
		"sentTo":          "Enviámos um código por SMS para o número %s (%s).",
		"codeLabel":       "Código de verificação",
		"continue":        "Continuar",
		"resend":          "Reenviar código",
		"send":            "Enviar um código",
		"resendIn":        "Pode pedir um novo código dentro de %s segundos.",
		"resendNoScript":  "Quando a contagem terminar, recarregue esta página para pedir um novo código.",
		"resendsLeft":     "Reenvios restantes: %d.",
		"noResends":       "Não é possível enviar mais códigos para este início de sessão.",
		"noResendsBackup": "Utilize um código de recuperação, ou volte a %s e inicie sessão novamente.",
		"noResendsAgain":  "Volte a %s e inicie sessão novamente.",
		"useBackup":       "Utilizar um código de recuperação",
		"backupHeading":   "Introduza um código de recuperação",
		"backupIntro":     "Cada código de recuperação funciona uma vez. Não é enviado nenhum SMS.",
		"backupLabel":     "Código de recuperação",
		"useSMS":          "Utilizar antes um código enviado por SMS",
		"cancel":          "Cancelar e voltar a %s",
		"sent":            "Foi enviado um novo código.",
		"invalidCode":     "Esse código não está correto. Tentativas restantes: %d.",
		"expired":         "Este código expirou. Peça um novo.",
		"lockedOut":       "Demasiados códigos errados. Tente novamente dentro de %s minutos.",
		"rateLimited":     "Foram enviados demasiados códigos para este número. Tente novamente dentro de %s minutos.",
		"unavailable":     "Não foi possível enviar um código agora. Tente novamente daqui a pouco.",
		"busy":            "Estamos muito ocupados agora. Tente novamente daqui a pouco.",
		"resendTooSoon":   "Aguarde um pouco antes de pedir outro código.",
		"backupDisabled":  "Os códigos de recuperação não estão disponíveis para este início de sessão.",
		"badForm":         "Este formulário expirou. Recarregue a página e tente novamente.",
		"errorTitle":      "Problema ao iniciar sessão",
		"flowExpired":     "Este início de sessão expirou ou já não é válido. Volte à aplicação e inicie sessão novamente.",
		"badRequest":      "Este pedido de início de sessão não é válido e não pode continuar.",
		"internal":        "Ocorreu um problema do nosso lado. Tente novamente daqui a pouco.",
	},
	"pt-BR": {
		"codeFormat":      "Digite o código do SMS (no máximo 32 caracteres).",
		"title":           "Confirme que é você",
		"heading":         "Digite o código que enviamos para você",
		"sentTo":          "Enviamos um código por SMS para o número %s (%s).",
		"codeLabel":       "Código de verificação",
		"continue":        "Continuar",
		"resend":          "Reenviar código",
		"send":            "Enviar um código",
		"resendIn":        "Você poderá pedir um novo código em %s segundos.",
		"resendNoScript":  "Quando a contagem terminar, recarregue esta página para pedir um novo código.",
		"resendsLeft":     "Reenvios restantes: %d.",
		"noResends":       "Não é possível enviar mais códigos para este login.",
		"noResendsBackup": "Use um código de backup, ou volte para %s e faça login novamente.",
		"noResendsAgain":  "Volte para %s e faça login novamente.",
		"useBackup":       "Usar um código de backup",
		"backupHeading":   "Digite um código de backup",
		"backupIntro":     "Cada código de backup funciona uma vez. Nenhum SMS é enviado.",
		"backupLabel":     "Código de backup",
		"useSMS":          "Usar um código enviado por SMS",
		"cancel":          "Cancelar e voltar para %s",
		"sent":            "Um novo código foi enviado.",
		"invalidCode":     "Esse código não está correto. Tentativas restantes: %d.",
		"expired":         "Este código expirou. Peça um novo.",
		"lockedOut":       "Muitos códigos errados. Tente novamente em %s minutos.",
		"rateLimited":     "Muitos códigos foram enviados para este número. Tente novamente em %s minutos.",
		"unavailable":     "Não foi possível enviar um código agora. Tente novamente em instantes.",
		"busy":            "Estamos muito ocupados agora. Tente novamente em instantes.",
		"resendTooSoon":   "Aguarde um pouco antes de pedir outro código.",
		"backupDisabled":  "Os códigos de backup não estão disponíveis para este login.",
		"badForm":         "Este formulário expirou. Recarregue a página e tente novamente.",
		"errorTitle":      "Problema no login",
		"flowExpired":     "Este login expirou ou não é mais válido. Volte para o aplicativo e faça login novamente.",
		"badRequest":      "Esta solicitação de login não é válida e não pode continuar.",
		"internal":        "Algo deu errado do nosso lado. Tente novamente em instantes.",
	},
}

// translator formats the prompt's messages in one locale.
type translator struct{ locale string }

// T formats key's message with args, HTML-escaped except for args that
// are template.HTML (markup the page itself built).
func (tr translator) T(key string, args ...any) template.HTML {
	f, ok := messages[tr.locale][key]
	if !ok {
		f = messages["en"][key]
	}
	esc := make([]any, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case template.HTML:
			esc[i] = string(v)
		case string:
			esc[i] = template.HTMLEscapeString(v)
		default:
			esc[i] = v
		}
	}
	return template.HTML(fmt.Sprintf(template.HTMLEscapeString(f), esc...))
}

// supported returns the supported locale for tag (its exact match, else
// its base language), or "".
func supported(tag string) string {
	tag = strings.TrimSpace(tag)
	for _, l := range Locales {
		if strings.EqualFold(l, tag) {
			return l
		}
	}
	base, _, _ := strings.Cut(tag, "-")
	for _, l := range Locales {
		if strings.EqualFold(l, base) {
			return l
		}
	}
	return ""
}

// pickLocale chooses the prompt's language: the first supported of
// uiLocales (OIDC ui_locales, space-separated, in preference order), then
// of Accept-Language by weight, then English.
func pickLocale(uiLocales, acceptLanguage string) string {
	for _, tag := range strings.Fields(uiLocales) {
		if l := supported(tag); l != "" {
			return l
		}
	}
	type weighted struct {
		tag string
		q   float64
	}
	var tags []weighted
	for i, part := range strings.Split(acceptLanguage, ",") {
		if i >= 20 {
			break
		}
		tag, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		q := 1.0
		if v, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				q = f
			}
		}
		if tag != "" && q > 0 {
			tags = append(tags, weighted{tag, q})
		}
	}
	sort.SliceStable(tags, func(a, b int) bool { return tags[a].q > tags[b].q })
	for _, w := range tags {
		if l := supported(w.tag); l != "" {
			return l
		}
	}
	return "en"
}
