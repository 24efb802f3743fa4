package vonage

// gsm7 holds every character of the GSM 03.38 default alphabet (basic
// table) and of its extension table (sent as escape + char), so a message
// made only of these can be sent as type=text.
var gsm7 = func() map[rune]bool {
	const basic = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?" +
		"¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
	const extension = "\f^{}\\[~]|€"
	m := make(map[rune]bool, 140)
	for _, r := range basic + extension {
		m[r] = true
	}
	return m
}()

// IsGSM7 reports whether s can be encoded in the GSM 03.38 7-bit alphabet
// (basic table plus extension table). Invalid UTF-8 is not GSM-7.
func IsGSM7(s string) bool {
	for _, r := range s {
		if !gsm7[r] {
			return false
		}
	}
	return true
}
