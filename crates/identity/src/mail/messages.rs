//! What the IMS's messages say, in plain text and HTML from the templates under
//! `templates/mail/`: the organisation's name, the person's, and the product instance they are
//! for. The HTML side escapes every value; the text side takes them as they are.

use askama::Template;

use super::{Compose, Mail, MailKind};
use crate::links::LinkPurpose;
use ims_core::Now;

/// Who a message goes to, and on behalf of which organisation.
#[derive(Clone, Copy, Debug)]
pub struct Recipient<'a> {
    pub org_id: &'a str,
    pub org_name: &'a str,
    pub email: &'a str,
    /// The person's first name; empty when unknown.
    pub name: &'a str,
}

#[derive(Template)]
#[template(path = "mail/invitation.txt")]
struct InvitationText<'a> {
    org: &'a str,
    name: &'a str,
    email: &'a str,
    link: &'a str,
    days: i64,
    instances: &'a [String],
    console: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "mail/invitation.html")]
struct InvitationHtml<'a> {
    subject: &'a str,
    org: &'a str,
    name: &'a str,
    email: &'a str,
    link: &'a str,
    days: i64,
    instances: &'a [String],
    console: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "mail/access.txt")]
struct AccessText<'a> {
    org: &'a str,
    name: &'a str,
    email: &'a str,
    instance: &'a str,
    console: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "mail/access.html")]
struct AccessHtml<'a> {
    subject: &'a str,
    org: &'a str,
    name: &'a str,
    email: &'a str,
    instance: &'a str,
    console: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "mail/password.txt")]
struct PasswordText<'a> {
    org: &'a str,
    name: &'a str,
    email: &'a str,
    link: &'a str,
    valid: &'a str,
    recovery: bool,
}

#[derive(Template)]
#[template(path = "mail/password.html")]
struct PasswordHtml<'a> {
    subject: &'a str,
    org: &'a str,
    name: &'a str,
    email: &'a str,
    link: &'a str,
    valid: &'a str,
    recovery: bool,
}

fn compose(to: &Recipient<'_>, kind: MailKind, subject: &str, text: String, html: String, now: Now) -> Mail {
    Mail::new(
        Compose {
            org_id: to.org_id,
            kind,
            to: to.email,
            subject,
            text: &text,
            html: &html,
        },
        now,
    )
}

/// A template that cannot render is a bug of ours (every value is a plain string), never the
/// recipient's: the message goes out with what rendered.
fn rendered(t: &impl Template) -> String {
    t.render().unwrap_or_else(|e| {
        tracing::error!(error = %e, "a mail template failed to render");
        String::new()
    })
}

/// An invitation to set up a new account: `link` opens the set-a-password page; `instances`
/// names the product instances the person was given (may be empty); `console` is where they go
/// afterwards, when known.
pub fn invitation(
    to: &Recipient<'_>,
    link: &str,
    instances: &[String],
    console: Option<&str>,
    now: Now,
) -> Mail {
    let subject = format!("{} invites you to sign in", to.org_name);
    let days = LinkPurpose::Invitation.lifetime_secs() / 86_400;
    let text = rendered(&InvitationText {
        org: to.org_name,
        name: to.name,
        email: to.email,
        link,
        days,
        instances,
        console,
    });
    let html = rendered(&InvitationHtml {
        subject: &subject,
        org: to.org_name,
        name: to.name,
        email: to.email,
        link,
        days,
        instances,
        console,
    });
    compose(to, MailKind::Invitation, &subject, text, html, now)
}

/// "You now have access to `instance`", sent once per person and product instance.
pub fn access(to: &Recipient<'_>, instance: &str, console: Option<&str>, now: Now) -> Mail {
    let subject = format!("You now have access to {instance}");
    let text = rendered(&AccessText {
        org: to.org_name,
        name: to.name,
        email: to.email,
        instance,
        console,
    });
    let html = rendered(&AccessHtml {
        subject: &subject,
        org: to.org_name,
        name: to.name,
        email: to.email,
        instance,
        console,
    });
    compose(to, MailKind::Access, &subject, text, html, now)
}

/// A link to choose a new password: an administrator's reset or the person's own recovery.
pub fn password(to: &Recipient<'_>, link: &str, purpose: LinkPurpose, now: Now) -> Mail {
    let subject = "Choose a new password".to_owned();
    let secs = purpose.lifetime_secs();
    let valid = if secs % 3600 == 0 {
        format!("{} hours", secs / 3600)
    } else {
        format!("{} minutes", secs / 60)
    };
    let recovery = purpose == LinkPurpose::Recovery;
    let text = rendered(&PasswordText {
        org: to.org_name,
        name: to.name,
        email: to.email,
        link,
        valid: &valid,
        recovery,
    });
    let html = rendered(&PasswordHtml {
        subject: &subject,
        org: to.org_name,
        name: to.name,
        email: to.email,
        link,
        valid: &valid,
        recovery,
    });
    compose(to, MailKind::PasswordReset, &subject, text, html, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TO: Recipient<'static> = Recipient {
        org_id: "O",
        org_name: "Acme <Corp>",
        email: "jane@example.com",
        name: "Jane",
    };

    #[test]
    fn an_invitation_names_the_organisation_the_instances_and_the_link_escaped_in_html() {
        let link = "https://ims/ims/invitation/imsinv_x?a=1&b=\"2\"";
        let m = invitation(
            &TO,
            link,
            &["Marketing (prod)".into()],
            Some("https://mkt.example.com/console/"),
            Now::from_millis(1),
        );
        assert_eq!(m.kind, MailKind::Invitation);
        assert_eq!(m.subject, "Acme <Corp> invites you to sign in");
        assert!(m.text.contains(link), "{}", m.text);
        assert!(m
            .text
            .contains("Acme <Corp> invites you to sign in to Marketing (prod)"));
        assert!(m.text.contains("within 7 days"));
        assert!(
            m.html
                .contains("href=\"https://ims/ims/invitation/imsinv_x?a=1&#38;b=&#34;2&#34;\""),
            "{}",
            m.html
        );
        assert!(m.html.contains("Acme &#60;Corp&#62;"));
        assert!(!m.html.contains("Acme <Corp>"));
        assert!(m.html.contains("https://mkt.example.com/console/"));
    }

    #[test]
    fn access_and_password_messages() {
        let a = access(
            &TO,
            "Marketing (prod)",
            Some("https://mkt/console/"),
            Now::from_millis(1),
        );
        assert_eq!(a.kind, MailKind::Access);
        assert_eq!(a.subject, "You now have access to Marketing (prod)");
        assert!(a.text.contains("https://mkt/console/"));
        let r = password(
            &TO,
            "https://ims/ims/reset/imspr_x",
            LinkPurpose::Recovery,
            Now::from_millis(1),
        );
        assert!(r.text.contains("within 30 minutes"), "{}", r.text);
        assert!(r.text.contains("Someone, hopefully you"));
        let a = password(
            &TO,
            "https://ims/ims/reset/imspr_x",
            LinkPurpose::Reset,
            Now::from_millis(1),
        );
        assert!(a.text.contains("within 24 hours"), "{}", a.text);
        assert!(a.text.contains("An administrator of Acme <Corp>"));
    }
}
