"""Hand-written material for SHORT conversations (2-4 turns, ~20-80 words), original to this project.

`short.py` composes conversations from it. The slots are those of `bank.SLOTS` ({company}, {product},
{audience}, {channel}, {metric}, {value}, {target}, {quarter}, {month}, {weekday}, {person}, {pct}) plus
{kind}, a short noun phrase for the company's industry ("a B2B software company"), from `INDUSTRY_KINDS`.
A capitalised slot name gives the value with its first letter upper-cased.

The rules of `bank.py` hold here too:
- a SIGNALS utterance is ONE short sentence carrying the memory signal of its own category and no other;
- NONE_ITEMS, GREETINGS, OPENERS, FOLLOWUPS, ASKS, CLOSERS, LEAD_INS and AFTER_ANSWER carry no lasting signal;
- assistant replies never introduce a new fact about the company or the person.
"""

from __future__ import annotations

# Industry name (bank.INDUSTRIES) -> the {kind} slot.
INDUSTRY_KINDS: dict[str, str] = {
    "B2B software": "a B2B software company",
    "fashion e-commerce": "an online fashion brand",
    "consumer fintech": "a consumer fintech app",
    "healthcare clinics": "a local healthcare provider",
    "hospitality": "a hospitality business",
    "beverages": "a drinks brand",
    "online education": "an online learning company",
    "real estate": "a residential property business",
    "fitness": "a fitness brand",
    "nonprofit": "a nonprofit",
    "automotive": "an automotive brand",
    "travel": "a travel company",
    "pet care": "a pet care brand",
    "cybersecurity": "a cybersecurity firm",
    "restaurants": "a restaurant group",
}

# Words that keep their capital when a signal follows a lead-in such as "FYI, " (proper nouns, "I").
KEEP_CAPITAL = frozenset({"I", "English", "LinkedIn", "Pardot", "Salesforce", "Segment"})

# ---------------------------------------------------------------------------------------------------------
# Signal utterances: one short sentence each. Every fourth one (index % 4 == 3) is held out for the test split.
# ---------------------------------------------------------------------------------------------------------

SIGNALS: dict[str, tuple[str, ...]] = {
    "company.brand_core": (
        "We're {kind}, and our tone is always friendly but precise.",
        "Our brand voice at {company} is warm and a little cheeky, never corporate.",
        "The whole mission at {company} is making life simpler for {audience}.",
        "We never use exclamation marks in our copy, it's a brand rule.",
        "Our brand colours are navy and coral, and the logo always sits on white.",
        "We position {company} as the premium choice, so no discount-led headlines.",
        "Our core values are honesty, craft and kindness, and the copy should show all three.",
        "We always write {company} in full, never shortened to initials.",
        "Our voice is plain English with short sentences and zero buzzwords.",
        "We're the friendly underdog in our space, a bit scrappy and proud of it.",
        "Our tagline is 'Less fuss, more life' and headlines should echo it.",
        "We only show real customers in our visuals, never stock photos.",
        "{Company} should always sound calm and reassuring, never pushy.",
        "We're {kind} that wants to feel like a trusted neighbour, not a faceless chain.",
        "Sustainability is at the heart of our brand, so anything that feels wasteful is off-brand.",
        "We talk to customers as 'you' and keep it conversational, never 'dear customer'.",
        "We're {kind} with a playful voice: witty, but never sarcastic.",
        "Our house look is lowercase headlines and lots of white space.",
        "{Company} stands for transparency, so our messaging never hides anything in fine print.",
        "We want {company} to come across as expert but approachable, like a good teacher.",
    ),
    "company.strategic_signatures": (
        "We always launch to existing customers first and open up to everyone a few weeks later.",
        "{Company} never competes on price; when rivals discount, we add value instead.",
        "Our growth has always come from referrals rather than paid ads.",
        "Every big decision here gets judged on one thing: does it help retention?",
        "We're product-led at heart, so the free tier does most of the selling.",
        "We tend to make a few big bets a year instead of lots of small experiments.",
        "When we enter a new market, we always start with local partnerships before any paid media.",
        "We follow the category leader fast rather than trying to be first.",
        "Our pattern is land and expand: win one team, then grow across the account.",
        "We go deep on one segment at a time before moving on to the next.",
        "In a downturn {company} keeps spending on brand while competitors pull back.",
        "We build community first and let sales follow, that's always been our way.",
        "On principle we stay off marketplaces, because we want to own the customer relationship.",
        "Leadership here only backs ideas that can pay back within a year, that's the standing rule.",
        "We price on outcomes rather than features, and that has shaped every launch.",
        "Our habit is to pilot anything new in one city before rolling it out nationally.",
        "Content and events always come first in our mix, with paid ads last.",
        "{Company} wins by getting onto new channels early and owning them before anyone else.",
        "At {company}, big calls always need product, marketing and finance to agree.",
        "We'd rather partner with bigger brands than try to outspend them, it's how we've always grown.",
    ),
    "company.knowledge_artifacts": (
        "We have a launch playbook that every campaign follows step by step.",
        "There's an approved messaging doc for {product} that legal signed off.",
        "Our style guide lives in Notion and covers spelling, formatting and banned words.",
        "We've got a persona deck built from last year's interviews with {audience}.",
        "There's an email template library we reuse for every send.",
        "Our strongest sales asset is a case study on how one client doubled bookings with {product}.",
        "Sales works from a competitor battlecard that marketing keeps up to date.",
        "We publish an annual industry report, and the latest edition is our go-to source of stats.",
        "We keep a claims register listing every statistic we're allowed to quote publicly.",
        "There's a creative brief template everyone has to use for requests.",
        "We have a shared folder of campaign retros going back three years.",
        "Our FAQ bank has pre-approved answers for tricky social replies.",
        "There's a one-page pricing sheet that sales and marketing both work from.",
        "Our segmentation study defines four customer segments, and all targeting refers to them.",
        "Our webinar recordings are archived with transcripts, ready to repurpose.",
        "There's a content calendar template in the shared drive that every team copies.",
        "We keep a swipe file of our best-performing ads from the last two years.",
        "We have a photo library of approved shots of {product} for campaigns.",
        "There's an onboarding guide for new marketers that explains how we write briefs.",
        "Legal gave us a list of pre-approved disclaimers that we paste into every ad.",
    ),
    "company.business_priorities": (
        "Our big goal for {quarter} is growing sign-ups by {pct}%.",
        "We're launching {product} on the 12th of {month}, so that's the priority.",
        "Our budget got cut by {pct}% this quarter, so nothing new unless something else pauses.",
        "Everything customer-facing needs legal review before it ships now.",
        "This quarter the focus is retention, not winning new customers.",
        "We have a trade show in {month} and all the assets have to be ready a week before.",
        "Leadership wants acquisition costs down by the end of {quarter}.",
        "We can't mention pricing anywhere until the new plans go live in {month}.",
        "There's a hiring freeze, so whatever we plan has to work with the current team.",
        "Our target this year is {pct} new retail partners, and marketing has to support it.",
        "The website relaunch has to be live by the end of {quarter}, no slipping.",
        "We need SMS opt-in consent sorted before {month} because of the new rules.",
        "Finance has frozen new vendor contracts until the financial year ends.",
        "The holiday campaign must go live by the 1st of {month}, and its budget is fixed.",
        "Right now the priority is pipeline for {product}, and everything else can wait.",
        "The board wants us profitable by year-end, so every campaign needs a clear payback.",
        "Winning over {audience} is the main push for this half of the year.",
        "Our paid budget for {quarter} is capped at fifty thousand, full stop.",
        "We've got until {month} to get demo requests up {pct}%, and that's the team's number.",
        "From next month every ad has to pass the new accessibility checks, it's mandatory.",
    ),
    "company.tools_config": (
        "We moved our email from Mailchimp to Klaviyo last month.",
        "Our CRM is HubSpot, synced with Salesforce for the sales team.",
        "We track the whole site in GA4 through Google Tag Manager.",
        "Our Meta ads are split into prospecting and retargeting campaigns per region.",
        "Our landing pages are built in Webflow and the forms feed into Marketo.",
        "The store runs on Shopify, with Klaviyo flows for abandoned carts.",
        "We use Braze for push and email, with product events coming in from Segment.",
        "Our attribution comes from a Looker dashboard on the Snowflake warehouse.",
        "All our social accounts are scheduled through Hootsuite.",
        "Our UTM tags come from a naming template in a shared sheet.",
        "We run paid search on Google Ads and Microsoft Ads, both linked to the CRM.",
        "Support tickets live in Zendesk and sync into our CDP.",
        "We A/B test the website with Optimizely.",
        "Our automation platform is Pardot, with one business unit per country.",
        "LinkedIn Campaign Manager pulls our matched audiences from the CRM every day.",
        "We use Amplitude for product analytics and Hotjar on the key pages.",
        "Our webinars run on Zoom, and registrations push into HubSpot automatically.",
        "Reviews go through Yotpo and subscriptions through Recharge on our Shopify store.",
        "We switched the newsletter to Beehiiv and connected it to our Stripe account.",
        "Our SMS goes out through Attentive, triggered off Shopify events.",
    ),
    "company.performance_context": (
        "Last month our {metric} was {value}, against a target of {target}.",
        "Our {channel} test just finished, and the video ad won by about {pct}%.",
        "Our {metric} has been stuck around {value} all quarter.",
        "Right now our strongest channel is {channel}, with about {pct}% of conversions.",
        "The spring campaign underperformed, and conversions dropped by almost a third.",
        "We finished {quarter} with {metric} at {value}, short of the {target} goal.",
        "Costs on {channel} are up about {pct}% since last month.",
        "Our open rates have dropped three months in a row.",
        "Our last webinar got half the sign-ups we expected.",
        "The new subject lines lifted opens by {pct}% in last week's test.",
        "We're about {pct}% behind our lead target quarter to date.",
        "Our benchmark for {metric} is {target}, and right now we're at {value}.",
        "The holiday push beat last year's revenue by {pct}%.",
        "Our {metric} improved to {value} this month but is still below {target}.",
        "Our retargeting ads have the lowest cost per sale of anything we run.",
        "Brand search volume is up {pct}% since the TV spots started.",
        "The referral email converts at twice the rate of our regular newsletter.",
        "Our app store rating slipped from 4.6 to 4.2 this quarter.",
        "Last quarter's spend on {channel} drove almost no sales, honestly.",
        "The pricing page test was a wash, with more revenue per visitor but fewer sign-ups.",
    ),
    "user.communication_style": (
        "Keep your answers short with me, a few bullets is plenty.",
        "Please skip the jargon, plain English works best for me.",
        "I like detail, so walk me through your reasoning.",
        "Lead with the answer when you reply to me, then give the background.",
        "Casual is fine with me, no need to be formal.",
        "Tables work better for me than long paragraphs.",
        "Give me the numbers first and the story after, that's how I read.",
        "English is my second language, so simple sentences help me a lot.",
        "Please don't use emojis when you write to me.",
        "I prefer one short paragraph over a long list.",
        "You don't need to explain terms like CAC or ROAS to me.",
        "Use headings in longer answers, they help me skim.",
        "Write to me like a colleague on Slack, not like a report.",
        "Examples help me more than theory, so always include one.",
        "Numbered steps please, whenever you explain a process to me.",
        "Skip the pleasantries with me, I like a blunt, direct tone.",
    ),
    "user.strategic_approach": (
        "I always test small before I scale anything.",
        "I'd pick owned channels over paid every time.",
        "I'm pretty risk-averse and want payback within a quarter before doubling down.",
        "I like to start from the customer's problem and work backwards.",
        "I think brand and performance need each other, so I never cut brand entirely.",
        "I go for the option that teaches us the most, not the safest one.",
        "I won't call a test until it's statistically significant.",
        "I'd rather do two channels well than six badly.",
        "I like bold creative, because safe work just gets ignored.",
        "For me retention always comes before acquisition.",
        "I treat every campaign as a bet with odds and a payoff.",
        "Customer interviews sway me more than dashboards do.",
        "I prefer evergreen programmes to one-off campaigns.",
        "I'd rather borrow what works in other industries than reinvent it.",
        "My instinct is to ship fast and fix later rather than polish forever.",
        "When budgets get tight, I protect the top of the funnel first.",
    ),
    "user.role_context": (
        "I run lifecycle marketing at {company} and report to the CMO.",
        "I'm the only marketer at {company}, so I do a bit of everything.",
        "I just joined as Head of Demand Gen, and paid media sits with me.",
        "I'm the product marketing manager for {product}, but I don't own the budget.",
        "I'm the Growth Lead, managing two contractors and an agency.",
        "I'm on the brand team and report to the VP of Marketing.",
        "I'm a junior coordinator, so the big calls go to my manager {person}.",
        "I lead content at {company}, with three writers on my team.",
        "I manage marketing for the Nordics, with a dotted line to the global team.",
        "I'm a freelancer working with {company} for the next six months.",
        "I can sign off spend up to ten thousand without asking my boss.",
        "I'm the CMO here, with a team of about twenty.",
        "I'm actually in sales, helping marketing out with technical content.",
        "I'm the founder of {company}, so for now marketing is just me.",
        "I look after customer marketing and work closely with customer success.",
        "I handle partner marketing and events, and I report to {person}.",
    ),
    "user.workflow_patterns": (
        "I plan my campaigns every Monday and review them on {weekday}.",
        "Everything I write goes through {person} in legal before it ships.",
        "I draft in Google Docs and hand off to my designer in Figma.",
        "I send my team a recap every Friday afternoon.",
        "I work in two-week sprints with the web team.",
        "I batch a month of social posts in one go at the end of each month.",
        "I triage my Trello board every morning before stand-up.",
        "Every brief I write gets peer-reviewed before it goes to creative.",
        "I review paid campaigns with our agency on a call every {weekday}.",
        "I do deep work in the mornings and save meetings for the afternoons.",
        "I tag {person} in Asana for anything that needs design.",
        "Once a quarter I audit all our automations in one sitting.",
        "I always try new copy on the sales team before it goes out.",
        "I sleep on every draft before I send it.",
        "My sign-off chain is me, then my director, then compliance.",
        "I keep a running doc of ideas and go through it with {person} every month.",
    ),
    "user.session_history": (
        "Following up on yesterday, I went with your second headline.",
        "Last time we agreed to pause the retargeting test on {channel}.",
        "I shared the brief we worked on with {person}, so let's do the timeline next.",
        "We still need to finish the fourth email from last week's sequence.",
        "Picking up from our last chat, we dropped the discount idea.",
        "You promised me a webinar follow-up checklist on Tuesday.",
        "I've got my manager's feedback on the segments we mapped this morning.",
        "I'm back to finish the survey we started on Monday.",
        "The landing page you helped me rewrite is live now.",
        "Last week we settled on 'Small Wins' as the campaign name, so let's keep it.",
        "I checked the tracking with the dev team like I said I would, and it works.",
        "I picked one of the subject lines you drafted yesterday.",
        "As we discussed on Friday, the partner webinar is off the plan.",
        "We never finished that competitor comparison from our last session.",
        "{Person} wants the intro we drafted this morning cut down.",
        "Continuing from earlier, you were going to draft the email to the agency.",
    ),
    "user.interaction_preferences": (
        "From now on just give me one recommendation, not a list.",
        "Be proactive with me and flag problems even if I don't ask.",
        "Check with me before you rewrite anything wholesale.",
        "Lately it works better if you ask me a couple of questions before drafting.",
        "Push back when you disagree with me, I don't want a yes-man.",
        "Going forward, give me two or three options with their trade-offs.",
        "You can stop offering follow-up suggestions at the end of every answer.",
        "When you review my drafts, start with what's not working.",
        "No need to confirm each step with me anymore, just run with it.",
        "Don't ask whether I want a draft, just write one.",
        "Tell me how confident you are whenever you're not sure.",
        "Remind me of any open to-dos at the start of our chats.",
        "Act as a sounding board for now, not a copywriter.",
        "Score my ideas out of ten from now on.",
        "Play devil's advocate on my plans for the next few weeks.",
        "When I paste in copy, edit it directly and note each change.",
    ),
}

# ---------------------------------------------------------------------------------------------------------
# "none" items: (kind, user turn, assistant answer); "chat" is small talk, "ask" a one-off question or request.
# Every fourth one is held out for the test split.
# ---------------------------------------------------------------------------------------------------------

NONE_ITEMS: tuple[tuple[str, str, str], ...] = (
    ("chat", "Morning! How's it going?", "Good morning! All good here, thanks. What are we working on today?"),
    ("ask", "What does CTR stand for?", "Click-through rate: the share of people who saw something and clicked it."),
    ("ask", "Give me a synonym for 'easy'.", "Simple, effortless, straightforward or painless all work, depending on tone."),
    ("ask", "Is it 'log in' or 'login'?", "'Log in' is the verb and 'login' is the noun, as in 'log in with your login'."),
    ("chat", "Happy Friday!", "Happy Friday to you too. Anything you'd like to wrap up before the weekend?"),
    ("ask", "How many characters fit in a single SMS?",
     "A standard SMS holds 160 characters; longer messages get split into several parts."),
    ("ask", "What's a sensible length for an email subject line?",
     "Around 30 to 50 characters is a common guideline, so it isn't cut off on phones."),
    ("ask", "Can you fix this typo: 'recieve your order today'?", "It should read 'receive your order today'."),
    ("chat", "Ugh, Mondays.", "Fair enough. Want to start with something quick to get going?"),
    ("ask", "What's the difference between CPA and CAC?",
     "CPA is the cost per action on a campaign; CAC is the full cost of winning one customer."),
    ("ask", "Quick pizza pun for the team chat?", "'You've got a pizza my heart' usually gets a groan and a laugh."),
    ("ask", "Translate 'free shipping' into French, please.", "'Livraison gratuite' is the usual phrase."),
    ("chat", "Just checking you're working today.", "I'm here and ready to go. What do you need?"),
    ("ask", "What does ROAS mean?", "Return on ad spend: the revenue from ads divided by what you spent on them."),
    ("ask", "Suggest a name for a team trivia night.", "How about 'Quiz Khalifa', 'Les Quizerables' or 'The Smarty Pints'?"),
    ("ask", "Should it be 'fewer clicks' or 'less clicks'?", "'Fewer clicks', because clicks are something you can count."),
    ("chat", "Sorry, I got pulled into a meeting.", "No worries at all. What would you like to do next?"),
    ("ask", "Write a one-line caption for a photo of the office dog.", "'Chief Morale Officer, reporting for duty.'"),
    ("ask", "What's an A/B test, in one line?",
     "Showing two versions to similar groups and comparing which one performs better."),
    ("ask", "How do I say 'thank you' politely in Japanese?", "'Arigatou gozaimasu' is the polite form."),
    ("chat", "It's pouring with rain here today.", "Sounds like a good day to stay in and get some work done."),
    ("ask", "Give me three words that rhyme with 'sale'.", "Mail, trail and scale, and 'detail' if you want a longer one."),
    ("ask", "Roughly what time is 3pm in London for someone in New York?",
     "Usually 10am, since New York is normally five hours behind London."),
    ("ask", "Can you make 'We are pleased to inform you' sound friendlier?",
     "Try 'Good news!' or 'We're happy to let you know'."),
    ("chat", "Long week, honestly.", "Sorry to hear it. Tell me how I can make the rest of it a bit easier."),
    ("ask", "Proofread this for me: 'Your invited to our open day.'", "It should be 'You're invited to our open day.'"),
    ("ask", "Shorten this: 'In order to get started, please click here.'", "'To get started, click here.' does the same job."),
    ("ask", "What's the opposite of churn?", "Retention: keeping customers with you over time."),
    ("chat", "Testing, testing. Is this thing on?", "Loud and clear. How can I help?"),
    ("ask", "What's the capital of Australia? We're settling a bet.", "It's Canberra, not Sydney."),
    ("ask", "How do you spell 'accommodation'?", "A-c-c-o-m-m-o-d-a-t-i-o-n, with two c's and two m's."),
    ("ask", "What's the difference between a lead and a prospect?",
     "A lead has shown some interest; a prospect has been qualified as a likely fit."),
    ("chat", "Haha, that last answer made me laugh.", "Glad it brought a smile. What's next?"),
    ("ask", "Is 'ecommerce' one word now?", "Both 'e-commerce' and 'ecommerce' are common; just pick one and stay consistent."),
    ("ask", "What does 'evergreen content' mean?", "Content that stays useful long after it's published, like a how-to guide."),
    ("ask", "What's a polite way to chase an unpaid invoice?",
     "Something like 'Just a friendly reminder that invoice 123 is now due' keeps it light."),
)

# ---------------------------------------------------------------------------------------------------------
# Neutral material (no signal), shared by both splits.
# ---------------------------------------------------------------------------------------------------------

# A greeting that opens a conversation, with the assistant's reply.
GREETINGS: tuple[tuple[str, str], ...] = (
    ("Hi!", "Hi there! What can I help with?"),
    ("Hey, got a minute?", "Sure, what's up?"),
    ("Morning.", "Good morning! What are we working on?"),
    ("Hello!", "Hello! How can I help today?"),
    ("Hey there.", "Hey! What do you need?"),
    ("Hi, quick one.", "Of course. What is it?"),
    ("Quick thing before we start.", "Sure, go ahead."),
)

# A short request that opens a piece of work; the reply invites context.
OPENERS: tuple[tuple[str, str], ...] = (
    ("Can you help me with a quick email?", "Sure. Who's it for, and anything I should know first?"),
    ("I need a caption for a {channel} post.", "Happy to help. Anything I should know before I write it?"),
    ("Got a minute to help with some copy?", "Of course. What are we writing?"),
    ("Can you help me brainstorm a campaign name?", "Gladly. Tell me a bit about it first."),
    ("I want to plan next month's content.", "Sounds good. What should I know before we start?"),
    ("Can you look over a headline for me?", "Sure, paste it in. Any context I should have?"),
    ("Quick favour: a tagline for {product}?", "Sure thing. Anything I should keep in mind?"),
    ("I'm putting together a short brief.", "Great. What do you have so far?"),
    ("Need some ideas for the newsletter.", "Happy to. Give me a little background."),
    ("Can we work on an ad for {product}?", "Yes, let's do it. Give me a bit of background first."),
)

# Neutral questions appended to a signal turn, each with a reply that fits it.
ASKS: tuple[tuple[str, str], ...] = (
    ("Any thoughts?", "Happy to share some. What's the piece you're working on?"),
    ("Can you help me with a post for {channel}?", "Sure. What's the one thing you want people to take away?"),
    ("Where would you start?", "I'd start by agreeing one clear goal, then build the message around it."),
    ("Could you suggest a subject line?", "How about 'A quick note from {company}'? I can try a few more angles."),
    ("Can we draft something quick for {product}?", "Sure. Here's a start: 'Meet {product}.' Want it bolder or calmer?"),
    ("What would you do first?", "I'd pick one audience and one message, then build from there."),
    ("Does that change your advice?", "It does shape it, and I'll tailor my suggestions to fit."),
    ("Can you help me plan next week's posts?", "Sure. How many posts are you thinking of?"),
    ("Can you help me write a short intro?", "Sure. Who's reading it, and where will it appear?"),
    ("What would you suggest for a first post?", "Something short that shows {product} in action is a good start."),
)

# Neutral follow-ups on a second user turn, each with its answer.
FOLLOWUPS: tuple[tuple[str, str], ...] = (
    ("Can you draft a one-line tagline for {product}?", "Here's one: '{Product}, without the hassle.' Want a couple more?"),
    ("What should I post first?", "Start with something simple that shows {product} in use, then build from there."),
    ("Could you suggest a headline?", "Try 'The easier way to get it done'. I can make it punchier if you like."),
    ("Can we start on the email now?", "Sure. Let's begin with the subject line and the opening sentence."),
    ("What's a sensible first step?", "Agree the one goal for the next few weeks, then plan backwards from it."),
    ("Can you write a quick caption?", "Here's a start: 'Something new is on the way.' Shall I tailor it to {channel}?"),
    ("Any quick wins you'd suggest?", "Tighten the call to action and sharpen the first line; both are quick to try."),
    ("OK, so where do we begin?", "Let's begin with the brief: the goal, the audience and the main message."),
)

# A closing user turn, with the assistant's reply.
CLOSERS: tuple[tuple[str, str], ...] = (
    ("Great, thanks!", "You're welcome. Shout if you need anything else."),
    ("Perfect, that's all for now.", "Sounds good. Talk soon."),
    ("Cool, thanks.", "Any time."),
    ("That's it, cheers.", "Cheers! Good luck with it."),
    ("Thanks, that's helpful.", "Glad to hear it."),
    ("OK, I'll take it from here.", "Great. I'm here if you need me."),
)

# Put in front of a signal that opens a conversation (a lead-in not ending a sentence lower-cases the signal).
LEAD_INS: tuple[str, ...] = (
    "Hey! ", "Hi. ", "Quick context: ", "FYI, ", "Heads up, ", "Before we start, ", "Just so you know, ",
    "For context, ", "Morning! ",
)

# Put in front of a signal that follows the assistant's answer to a none question.
AFTER_ANSWER: tuple[str, ...] = ("Thanks. ", "Cheers. ", "Good to know. By the way, ", "Thanks! Also, ")

# Joins two signals that share one user turn.
CONNECTORS: tuple[str, ...] = (" ", " ", " Also, ", " Oh, and ")

# ---------------------------------------------------------------------------------------------------------
# Assistant replies (no new facts).
# ---------------------------------------------------------------------------------------------------------

ACKS: tuple[str, ...] = (
    "Got it, thanks.",
    "Noted, I'll keep that in mind.",
    "Thanks, that's useful to know.",
    "Understood, I'll work with that.",
    "Good to know, thanks for telling me.",
    "Makes sense. I'll bear that in mind.",
    "Thanks for the context.",
)

# Added after the acknowledgement when the signal answered the assistant's request for context.
NEXT_STEPS: tuple[str, ...] = (
    "I'll draft something with that in mind.",
    "Let me put a first version together.",
    "I'll keep that in view as we write.",
    "Let's get going on it.",
)

CATEGORY_REPLIES: dict[str, tuple[str, ...]] = {
    "company.brand_core": ("Love that voice. I'll write to match it.", "Clear. I'll keep everything on-brand.",
                           "Noted, I'll keep the copy in that style."),
    "company.strategic_signatures": ("That's a clear pattern. I'll plan with it in mind.",
                                     "Good to know how {company} usually plays it.",
                                     "Understood, I won't suggest anything that cuts against that."),
    "company.knowledge_artifacts": ("Great, I'll build on that rather than start fresh.",
                                    "Handy. Paste in the relevant bits whenever it's useful.",
                                    "Good, I'll stay consistent with it."),
    "company.business_priorities": ("Understood, that comes first then.", "Clear. I'll keep suggestions within that.",
                                    "Got it, let's plan around that."),
    "company.tools_config": ("Thanks, I'll keep suggestions to that set-up.", "Good to know the stack.",
                             "Noted. I'll assume that set-up from here."),
    "company.performance_context": ("Thanks for the numbers.", "Useful baseline, thanks.",
                                    "Good context. Let's see what's driving it."),
    "user.communication_style": ("Will do.", "Sure, I'll write to you that way.", "Noted, I'll adjust my replies."),
    "user.strategic_approach": ("Fair principle. I'll keep that in mind.", "Makes sense, I'll weigh options that way.",
                                "Got it, I'll frame ideas with that in mind."),
    "user.role_context": ("Thanks, that helps me pitch things right.", "Good to know your remit.",
                          "Nice to meet you. I'll keep your role in mind."),
    "user.workflow_patterns": ("Good to know, I'll fit around that.", "Thanks, I'll plan with that routine in mind.",
                               "Understood, I'll leave time for that."),
    "user.session_history": ("Great, let's carry on from there.", "Thanks for the update. Picking it up now.",
                             "Good, let's continue."),
    "user.interaction_preferences": ("Sure, I'll do that from now on.", "Got it, I'll change how I work with you.",
                                     "Understood. Tell me if you want that changed again."),
}
