//! Names both services and the engine use on the wire, defined once: the product context of the
//! Campaign instances, the scope under which a token's product profiles are projected, the
//! back-channel logout event, the usage actions of console sign-ins. Values the vendor's clients and instances already know.

/// The product context of Campaign instances (their product profiles belong to it).
pub const CAMPAIGN_PRODUCT_CONTEXT: &str = "dma_campaign_classic";

/// The scope under which the IMS projects a token's product profiles (`/ims/profile/v1`); the
/// Campaign API grants it, and instances require it of technical accounts.
pub const PROFILE_SCOPE: &str = "additional_info.projectedProductContext";

/// The event of an OpenID Connect back-channel logout token.
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// The usage action of a password sign-in to an instance's console. The engine reads usage by
/// these names to tell people (console sign-ins) from programs (API calls).
pub const CONSOLE_LOGON: &str = "console#Logon";

/// The usage action of a console sign-in through the IMS.
pub const CONSOLE_IMS_LOGON: &str = "console#ImsLogon";
