package services

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"strings"
	"time"
)

// Email is a message ready to send: plain text, with an optional attachment.
type Email struct {
	From, To   string // bare addresses
	Subject    string
	Text       string
	MessageID  string // without the angle brackets
	Date       time.Time
	Attachment *Attachment
}

// Attachment is a file sent with an email.
type Attachment struct {
	Name        string
	ContentType string // e.g. text/calendar; method=PUBLISH
	Data        []byte
}

// Bytes renders e as an RFC 5322 message with MIME: text/plain
// (quoted-printable, UTF-8), in multipart/mixed when there is an
// attachment. Lines end in CRLF.
func (e Email) Bytes() ([]byte, error) {
	from, err := mail.ParseAddress(e.From)
	if err != nil {
		return nil, fmt.Errorf("email from: %w", err)
	}
	to, err := mail.ParseAddress(e.To)
	if err != nil {
		return nil, fmt.Errorf("email to: not an address")
	}
	var b bytes.Buffer
	h := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	h("From", from.String())
	h("To", to.String())
	h("Subject", mime.QEncoding.Encode("utf-8", oneLine(e.Subject)))
	h("Date", e.Date.Format(time.RFC1123Z))
	h("Message-ID", "<"+oneLine(e.MessageID)+">")
	h("MIME-Version", "1.0")
	h("Auto-Submitted", "auto-generated") // RFC 3834: no auto-replies, please
	text := qp(e.Text)
	if e.Attachment == nil {
		h("Content-Type", "text/plain; charset=utf-8")
		h("Content-Transfer-Encoding", "quoted-printable")
		b.WriteString("\r\n")
		b.Write(text)
		return b.Bytes(), nil
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	h("Content-Type", mime.FormatMediaType("multipart/mixed", map[string]string{"boundary": mw.Boundary()}))
	b.WriteString("\r\n")
	part, _ := mw.CreatePart(textproto.MIMEHeader{
		"Content-Type":              {"text/plain; charset=utf-8"},
		"Content-Transfer-Encoding": {"quoted-printable"}})
	part.Write(text)
	a := e.Attachment
	part, _ = mw.CreatePart(textproto.MIMEHeader{
		"Content-Type":              {a.ContentType},
		"Content-Transfer-Encoding": {"base64"},
		"Content-Disposition":       {mime.FormatMediaType("attachment", map[string]string{"filename": a.Name})}})
	part.Write(base64Lines(a.Data))
	mw.Close()
	b.Write(body.Bytes())
	return b.Bytes(), nil
}

// oneLine drops line breaks, so no value can add a header.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
}

func qp(text string) []byte {
	var b bytes.Buffer
	w := quotedprintable.NewWriter(&b)
	w.Write([]byte(strings.ReplaceAll(strings.ReplaceAll(text, "\r\n", "\n"), "\n", "\r\n")))
	w.Close()
	return b.Bytes()
}

var b64 = base64.StdEncoding

// base64Lines is data in base64, 76 characters a line (RFC 2045).
func base64Lines(data []byte) []byte {
	enc := make([]byte, b64.EncodedLen(len(data)))
	b64.Encode(enc, data)
	var b bytes.Buffer
	for len(enc) > 76 {
		b.Write(enc[:76])
		b.WriteString("\r\n")
		enc = enc[76:]
	}
	b.Write(enc)
	b.WriteString("\r\n")
	return b.Bytes()
}
