"""Hand-written text material for the embedded dataset (original to this project).

Everything here is plain data; `build.py` composes conversations from it.

Slots filled per conversation (see `SLOTS`): {company}, {product}, {audience}, {channel}, {metric},
{value}, {target}, {quarter}, {month}, {weekday}, {person}, {pct}. A capitalised slot name ({Product},
{Channel}, {Metric}, {Audience}, ...) gives the same value with its first letter upper-cased, for use at the
start of a sentence.

Rules the material keeps to:
- a SIGNALS utterance carries the memory signal of its own category and of no other one;
- NONE_ITEMS, OPENERS, FOLLOWUPS, ASKS, LEAD_INS and CLOSERS carry no lasting signal at all;
- assistant replies never introduce a new fact about the company or the person.
"""

from __future__ import annotations

from dataclasses import dataclass

SLOTS = ("company", "product", "audience", "channel", "metric", "value", "target", "quarter", "month",
         "weekday", "person", "pct")

# ---------------------------------------------------------------------------------------------------------
# Signal utterances: user turns that carry one category's memory signal.
# ---------------------------------------------------------------------------------------------------------

SIGNALS: dict[str, tuple[str, ...]] = {
    "company.brand_core": (
        "Quick context on {company}: our voice is warm and plain-spoken, never salesy. We'd rather sound like a "
        "knowledgeable friend than a brand shouting at people.",
        "Our mission at {company} is to make {product} feel effortless for {audience}, and everything we publish "
        "is supposed to ladder up to that.",
        "One thing to keep in mind: {company} never uses exclamation marks or all-caps in customer-facing copy. "
        "Calm confidence is the whole brand.",
        "We position ourselves as the premium, expert option in the category, not the cheap one, so our copy "
        "should never lead with discounts.",
        "Our brand colours are deep green and off-white, and the logo always sits on a plain background with "
        "plenty of breathing room around it.",
        "The three values we built {company} on are honesty, craft and generosity. If a message doesn't reflect "
        "at least one of them, it doesn't go out.",
        "We talk to customers in the second person and keep things a little playful, but we never make jokes at "
        "the customer's expense.",
        "{company} is known as the straight-talking underdog in a category full of corporate waffle, and we want "
        "to keep that edge in everything we say.",
        "Our tagline is 'Made to last, priced to share', and every headline is meant to echo that idea of "
        "durability.",
        "Please note we always write our name in full as '{company}', never abbreviated, and our product names "
        "are capitalised exactly the same way every time.",
        "Tone-wise we're optimistic and evidence-led: every claim needs a reason to believe attached, and we avoid "
        "fear-based messaging entirely.",
        "At heart {company} is a sustainability brand. Everything in our identity, from packaging to photography, "
        "should signal low waste and honest sourcing.",
        "Our visual style is bright, candid photography of real customers. No stock images, no staged smiles, "
        "and that's non-negotiable for us.",
        "We describe ourselves as 'the calm in a noisy category' - short sentences, lots of white space, nothing "
        "that feels like hype.",
        "Our brand promise to {audience} is simple: no hidden fees, no fine print. Copy that even hints at a "
        "catch is off-brand for us.",
        "The founders wanted {company} to feel like a neighbourhood shop even as we grow, so the voice stays "
        "local, personal and a bit old-fashioned.",
    ),
    "company.strategic_signatures": (
        "The way {company} always grows is land-and-expand: get one team using {product}, prove value in ninety "
        "days, then go after the wider account.",
        "We have a house rule that we never compete on price. When a rival discounts, we answer with more value, "
        "not a lower number.",
        "Every launch at {company} follows the same pattern: existing customers get it first, then we open it up "
        "to {audience} a few weeks later.",
        "Leadership here decides almost everything with one test - does it strengthen retention? If not, it "
        "usually gets cut, however shiny it is.",
        "Historically we've won by being first onto a new channel and building a big presence there before "
        "competitors catch on.",
        "Our go-to-market has always been community-led. We build the audience first through events and "
        "content, and sales follows from that.",
        "{company} tends to make two or three big bets a year rather than spreading money across lots of small "
        "experiments.",
        "Whenever we enter a new region, the pattern is partnerships first - local retailers or associations - "
        "before we spend anything on paid media.",
        "We're product-led through and through: the free tier does the selling, and marketing's job is to get "
        "people into it.",
        "Our leadership has always preferred owning the relationship with {audience} directly, which is why "
        "we've consistently stayed away from marketplaces and resellers.",
        "As a rule, {company} follows fast on category trends instead of leading them. We let others test the "
        "water and then do it better.",
        "We package and price around outcomes, not features. That principle has shaped every big decision here "
        "for years.",
        "Our habit is to go deep on one segment at a time; we don't move on to a new audience until we're "
        "clearly number one with the current one.",
        "Whenever there's a downturn, {company} leans into brand spend while competitors pull back. It has paid "
        "off for us twice now.",
        "Big decisions here go to a panel of three - product, marketing and finance - and anything that can't "
        "win two of the three votes doesn't happen.",
        "Our growth model has always been referral-driven: we'd rather reward existing customers for "
        "introductions than buy cold traffic.",
    ),
    "company.knowledge_artifacts": (
        "We have a launch playbook that lays out every step from brief to post-mortem, and every campaign at "
        "{company} is supposed to follow it.",
        "There's an approved messaging framework for {product}: a one-page doc with the core claim, three proof "
        "points and the exact wording legal signed off.",
        "Our customer research from last year - about forty interviews with {audience} - is written up in a "
        "persona deck the whole team works from.",
        "We keep a template library for email: a welcome series, a win-back sequence and a product announcement "
        "layout that everyone reuses.",
        "Our editorial style guide covers date formats, the Oxford comma and a list of words we never use. It's "
        "the reference for all our copy.",
        "We published a case study with one of our biggest customers showing how {product} halved their set-up "
        "time. It's our best sales asset.",
        "There's a competitive battlecard with objection handling for each rival; sales uses it daily and "
        "marketing keeps it up to date.",
        "Every year we produce a state-of-the-market report for {audience}. The latest edition has survey data "
        "from around two thousand respondents and we quote it constantly.",
        "We have an FAQ bank of pre-approved answers for social replies, so the community team never has to "
        "improvise on sensitive topics.",
        "Our webinar archive has about thirty recorded sessions, each with a transcript, and we regularly "
        "repurpose them into articles.",
        "There's a pricing one-pager that sales and marketing both use, with the comparison table that was "
        "approved last spring.",
        "We maintain a claims register: every statistic we're allowed to use publicly, with its source and the "
        "date it was last verified.",
        "After every campaign we write a short retro doc, and they all live in one shared folder - roughly "
        "fifty of them going back three years.",
        "Our content pillars document maps each article topic to a stage of the funnel, and new writers get it "
        "on their first day.",
        "We ran a segmentation study in {quarter} last year that defines five customer segments, and all of our "
        "targeting refers to those segment names.",
        "There's a creative brief template we insist on for every request: objective, audience, single-minded "
        "message and mandatories.",
    ),
    "company.business_priorities": (
        "The big goal for {quarter} is pipeline for {product}: leadership wants marketing-sourced pipeline up "
        "{pct}% on last quarter.",
        "We're launching {product} on the 12th of next month, and frankly that's the only thing that matters for "
        "the team until then.",
        "Heads-up: our marketing budget has been cut by {pct}% for the rest of the year, so anything new has to "
        "be funded by pausing something else.",
        "Compliance just told us that every piece of customer-facing copy now needs a legal review before it "
        "ships, effective immediately.",
        "This quarter the company priority is retention rather than acquisition. The board wants churn down "
        "before we spend more on new customers.",
        "We have a hard deadline in {month}: the big trade show. All the launch assets have to be ready a week "
        "before so they can go to print.",
        "Our target for {quarter} is {pct} thousand new sign-ups from {audience}, and it's the number the whole "
        "company is being measured on.",
        "We can't run any promotion that mentions pricing until the new plans go live in {month}. That's a firm "
        "constraint from finance.",
        "The main initiative for the next two quarters is expanding into {audience}; the leadership team signed "
        "it off last week.",
        "We've been told to bring acquisition costs down before the end of {quarter}, even if growth slows for "
        "a while.",
        "Because of the new privacy rules we need explicit opt-in for text messages before {month}, so "
        "re-permissioning our contacts has to come first.",
        "There's a freeze on signing new vendors until the financial year ends, so whatever we do this quarter "
        "has to work with what we already pay for.",
        "The website relaunch has to be live across every market by the end of {quarter}. That date is fixed "
        "because of the investor announcement.",
        "Our main objective this half is getting {product} into fifty new retail locations, and marketing's job "
        "is to support that sales push.",
        "The board wants us profitable by year-end, so every campaign in {quarter} has to show a clear payback "
        "before it gets approved.",
        "We've committed to a holiday campaign that must go live by the 1st of {month}, and its media budget is "
        "fixed - finance won't approve a cent more.",
    ),
    "company.tools_config": (
        "Our email and push both run out of Braze now - we left Mailchimp at the start of the year - and "
        "product events come in through Segment.",
        "The CRM set-up is HubSpot for marketing and Salesforce for sales, syncing every fifteen minutes, with "
        "lead scoring on the HubSpot side.",
        "We track the site with GA4 and server-side tagging through Google Tag Manager, and offline conversions "
        "are imported into Google Ads every night.",
        "{company}'s Meta ad account is split into two campaigns per region, prospecting and retargeting, each "
        "optimising for its own pixel event.",
        "All of our landing pages are built in Webflow, and form submissions go straight into Marketo through a "
        "Zapier connection.",
        "We use Klaviyo for email and SMS, connected to our Shopify store, and the abandoned-cart flow triggers "
        "two hours after checkout is left.",
        "Attribution comes from a Looker dashboard on top of our Snowflake warehouse, using a position-based "
        "model rather than last click.",
        "Social scheduling goes through Sprout Social, and each brand account has its own approval queue "
        "configured in there.",
        "We run paid search in both Google Ads and Microsoft Ads, and UTM tags are generated from a naming "
        "template in a shared sheet.",
        "Support runs on Zendesk, and CSAT scores are piped into our CDP so unhappy customers are suppressed "
        "from promotional sends.",
        "Our marketing automation platform is Pardot, with a separate business unit per country and one shared "
        "lead-nurture program.",
        "We A/B test the website with Optimizely, and lifecycle messages are tested with the built-in "
        "experiments in Iterable.",
        "The store runs on Shopify Plus, with Recharge handling subscriptions and Yotpo running reviews and the "
        "loyalty scheme.",
        "LinkedIn Campaign Manager is connected to the CRM through the native integration, so our matched "
        "audiences refresh daily.",
        "We have Hotjar on the key pages and Amplitude for product analytics, but the two aren't connected to "
        "each other yet.",
        "Webinars run on ON24 and registrations sync into the CRM with a campaign ID, so every attendee is "
        "tagged automatically.",
    ),
    "company.performance_context": (
        "Last month our {metric} came in at {value} against a target of {target}, the weakest result we've had "
        "this year.",
        "The creative test on {channel} just finished: the customer-story version beat the product-shot version "
        "by about {pct}% on click-through.",
        "For context, {metric} has been sitting at {value} for most of {quarter}. The goal was {target}, so "
        "we're clearly off the pace.",
        "Our best-performing channel right now is {channel}: it drove roughly {pct}% of last quarter's "
        "conversions on a much smaller share of the spend.",
        "The benchmark we hold ourselves to for {metric} is {target}; we're currently at {value}.",
        "The spring campaign for {product} underdelivered. Traffic was fine, but conversion fell by almost a "
        "third compared with last year.",
        "We just got the {quarter} numbers: {metric} landed at {value}, an improvement on the quarter before "
        "but still some way from {target}.",
        "Costs on {channel} have been creeping up every week - we're paying about {pct}% more per result than at "
        "the start of the month.",
        "Our holdout test showed the welcome series really is incremental: new customers who get it spend "
        "roughly {pct}% more in their first ninety days.",
        "Engagement from {audience} has been trending down for three months straight; clicks keep falling even "
        "though the list keeps growing.",
        "The webinar series averaged about {pct}0 attendees per session last quarter, well below what we had "
        "planned for.",
        "In the last pricing-page test, defaulting to the annual plan raised revenue per visitor but cut "
        "sign-ups, so overall it was basically a wash.",
        "We've been tracking {metric} weekly since the site relaunch, and it has hovered around {value}, "
        "compared with the {target} we'd planned on.",
        "Our last push on {channel} was a mixed bag: {metric} reached {value}, still short of the {target} we "
        "wanted, although volume was strong.",
        "Quarter to date we're roughly {pct}% behind the lead target, and most of the gap is on {channel}.",
        "The brand-lift study came back: aided awareness among {audience} rose a few points after the campaign, "
        "but consideration didn't move at all.",
    ),
    "user.communication_style": (
        "Can you keep your answers short? Three or four bullet points is plenty for me - I read these between "
        "meetings.",
        "Please skip the jargon with me. Plain English works best; I don't need 'synergies' or 'north star "
        "metrics'.",
        "I actually like a lot of detail. Walk me through the reasoning step by step rather than only giving me "
        "the conclusion.",
        "When you reply, lead with the answer in the first line and put any background underneath it.",
        "A casual tone is fine with me - no need for the formal 'certainly, I'd be delighted to' stuff.",
        "Tables work much better for me than paragraphs whenever you're comparing options.",
        "Could you always give me the numbers first and the narrative after? I think in figures.",
        "English isn't my first language, so simple sentences help me a lot. Please avoid idioms where you can.",
        "Talk to me in a direct, no-nonsense way: short sentences, no fluff, and none of the hedging words like "
        "'perhaps' or 'arguably'.",
        "Keep it to one screen, please. If it needs more than that, give me a summary first and the detail "
        "after.",
        "I'm comfortable with technical marketing terms, so you don't need to define CAC or MQL for me.",
        "Headings and short sections help me a lot; long unbroken paragraphs are hard for me to scan.",
        "A quick note on style: write to me the way a colleague would in a chat message, not like a formal "
        "report.",
        "Please don't use emojis or exclamation marks when you write to me. A neutral, professional tone suits "
        "me best.",
        "I take things in better with an example, so whenever you explain a concept, pair it with a concrete "
        "one.",
        "Numbered steps, please, whenever you describe a process - it's just easier for me to follow that way.",
    ),
    "user.strategic_approach": (
        "I'm a big believer in testing small before scaling anything. I'd rather run three cheap experiments "
        "than one big launch.",
        "My bias is always toward owned channels; I'd take a growing email list over a cheap burst of paid "
        "traffic any day.",
        "Personally I'm fairly risk-averse with money - I want to see payback within a quarter before I double "
        "down on anything.",
        "I tend to start from the customer problem and work backwards. If we can't state the pain in one "
        "sentence, I don't want a campaign built on it.",
        "I think brand and performance have to work together, and I'm sceptical of anyone who treats "
        "upper-funnel spend as wasted money.",
        "When I'm choosing between ideas, I go for whichever one teaches us the most, even if it isn't the one "
        "with the biggest short-term upside.",
        "I'm quite strict about data: I won't call a test until it reaches significance, however exciting the "
        "early numbers look.",
        "My approach is to focus ruthlessly. I'd rather do two channels really well than be mediocre across six.",
        "I like bold, slightly contrarian creative. Safe work gets ignored, so I'm willing to take some risk to "
        "stand out.",
        "For me, retention is the foundation: I always look at fixing the experience for existing customers "
        "before spending on acquisition.",
        "I usually frame decisions as bets - how likely it is to work, what it's worth if it does, and what it "
        "costs if it doesn't.",
        "I trust qualitative research more than most marketers do. A handful of good customer interviews "
        "changes my mind more often than a dashboard.",
        "I prefer building evergreen programmes over one-off campaigns; anything that keeps working after we "
        "stop touching it gets my vote.",
        "My rule of thumb is to borrow what already works in adjacent industries rather than invent everything "
        "from scratch.",
        "I'm comfortable moving fast and fixing later. Getting something in front of {audience} quickly matters "
        "more to me than polish.",
        "When money is tight, my instinct is to protect the top of the funnel, because cutting awareness always "
        "bites two quarters later.",
    ),
    "user.role_context": (
        "For context, I run the lifecycle marketing team at {company} - four people - and I report to the CMO.",
        "I'm the only marketer at {company}, so I handle everything from social to events, and I answer directly "
        "to the founders.",
        "I joined {company} two months ago as Head of Demand Generation; paid media and the hand-off to sales "
        "both sit with me.",
        "I'm a product marketing manager, so I own positioning and launches for {product}, but I don't have "
        "budget authority.",
        "My title is Growth Lead. I manage two contractors and an agency, and my main stakeholders are the sales "
        "director and the CFO.",
        "I'm on the brand team, reporting to the VP of Marketing, and I'm responsible for campaign creative "
        "across all regions.",
        "Just so you know, I'm a marketing coordinator and fairly junior, so the big decisions go to my manager, "
        "{person}.",
        "I lead content at {company}: the blog, the newsletter and our video series all roll up to me, and I "
        "have three writers.",
        "I'm the regional marketing manager for Northern Europe, with a dotted line to the global team and a "
        "solid line to the country GM.",
        "I'm a freelance consultant on a six-month contract with {company}; my point of contact there is their "
        "marketing director.",
        "I hold the marketing budget for {product}, which means I can sign off spend up to an agreed limit "
        "without going upstairs.",
        "I'm the CMO here. The team is about twenty people across brand, growth and product marketing.",
        "I'm actually a sales engineer who's been asked to help marketing with technical content, so this is a "
        "bit outside my usual job.",
        "My role is split: half partner marketing, half running our events calendar, and I report to {person}.",
        "I look after customer marketing - advocacy, references and the user community - and I work closely "
        "with the customer success leads.",
        "I'm the founder and CEO of {company}, and until we hire someone I'm effectively the marketing "
        "department as well.",
    ),
    "user.workflow_patterns": (
        "My routine is to plan the week's campaigns on Monday morning and review everything in one batch on "
        "{weekday} afternoon.",
        "Anything I write goes to {person} in legal first and then to my director before it ships, which is "
        "usually a three-day turnaround.",
        "I draft everything in Google Docs and then my designer picks it up in Figma, so I need copy finalised "
        "before that hand-off.",
        "I send my team a recap every Friday, so I normally pull everything together on Thursday evening.",
        "I work in two-week sprints with the web team; landing page requests have to be in by the Wednesday "
        "before a sprint starts.",
        "My habit is to sketch a rough outline on paper first, write the draft in one sitting, and sleep on it "
        "before I send anything.",
        "I keep all my campaign requests on a Trello board and triage it every morning before the 9:30 "
        "stand-up.",
        "Every brief I write gets a peer review from another manager before it goes to creative. That's how "
        "I've always worked.",
        "I batch all of next month's social content in the last week of the month, then just monitor day to "
        "day.",
        "I have a monthly one-to-one with {person} where I bring a shortlist of ideas, and whatever gets "
        "approved goes into the following month's plan.",
        "I do deep work in the mornings and meetings in the afternoons, so I read long documents before lunch.",
        "My sign-off chain is me, then the brand manager, then regional compliance. Nothing skips a step, not "
        "even small social posts.",
        "I go through the paid campaigns with our agency on a call every {weekday}, and changes only go live "
        "after that meeting.",
        "I track my to-dos in Asana and tag {person} on anything that needs design; they pick tasks up every "
        "morning.",
        "Once a quarter I block out a full day to audit all our live automations, and I log the changes in a "
        "running document.",
        "I usually try new copy on a small internal group first - our sales team - before anything goes out to "
        "{audience}.",
    ),
    "user.session_history": (
        "Picking up from yesterday: we agreed to pause the retargeting test on {channel}, and you were going to "
        "help me write the note to the agency.",
        "Last time we spoke you suggested three angles for the {product} launch. I went with the second one, the "
        "customer-story angle.",
        "Following up on our session on {weekday}: I've shared the revised brief with {person}, so we can move "
        "on to the timeline.",
        "Remember the email sequence we outlined last week? I still need to finish the fourth message, which we "
        "left open.",
        "In our last chat we decided to drop the discount idea and test a free-delivery threshold instead. I'd "
        "like to carry on from there.",
        "You promised me a checklist for the webinar follow-up when we talked on Tuesday. Can we finish that now?",
        "Earlier today we mapped out the audience segments for {product}, and I now have my manager's feedback "
        "on two of them.",
        "We left off on the open question of whether to move money away from {channel}. I've got an answer from "
        "finance now.",
        "Two sessions ago you helped me rewrite the landing page hero. It's live now, and I want to go back to "
        "the FAQ section we skipped.",
        "Last week we settled on 'Small Wins' as the working title for the campaign, so let's keep using that.",
        "I'm back to finish the survey questions we started on Monday - we'd got through the first five.",
        "In our previous conversation I said I'd check the tracking with the dev team. Done: they confirmed it "
        "works, so let's resume.",
        "Yesterday you drafted three subject lines for the {month} newsletter. I've picked one and want to work "
        "on the body now.",
        "As we discussed on Friday, I'm taking the partner webinar off the plan; let's replace it with the "
        "case-study push we talked about.",
        "We never finished the competitor comparison from our last session - you'd filled in two of the four "
        "columns.",
        "Following on from this morning: I ran your draft past {person} and they want the intro cut down. Can we "
        "pick that thread back up?",
    ),
    "user.interaction_preferences": (
        "From now on, just give me one recommendation rather than a list of options. I'll ask if I want "
        "alternatives.",
        "Be more proactive with me, please: if you spot a problem in what I'm planning, flag it even if I didn't "
        "ask.",
        "Please check with me before rewriting anything wholesale. Suggest changes and let me decide.",
        "Lately I've found it more useful when you ask me a couple of clarifying questions first instead of "
        "jumping straight to a draft.",
        "Push back on me when you disagree. I'd rather have an argument than a yes-man.",
        "Going forward, give me two or three options with their trade-offs; choosing between alternatives helps "
        "me think.",
        "You don't need to offer follow-up suggestions at the end of every answer anymore. If I need more, I'll "
        "ask.",
        "When you give me feedback on my drafts, start with what isn't working. I don't need the compliments "
        "first.",
        "I've changed my mind about the check-ins: you don't need to confirm each step with me now, just run "
        "with it and I'll review at the end.",
        "Could you stop asking whether I want a draft and just produce one? It saves us a round trip.",
        "When you're unsure about something, tell me how confident you are rather than presenting it as fact.",
        "I'd appreciate it if you reminded me of any open to-dos at the start of our chats - I tend to lose "
        "track.",
        "For now, please act more like a sounding board than a copywriter: I want questions and reactions, not "
        "finished copy.",
        "When I run ideas past you, score them out of ten. A rating helps me calibrate.",
        "For the next few weeks I'd like you to play devil's advocate on any plan I bring you.",
        "New preference: when I paste in copy, edit it directly and note each change, rather than describing "
        "what you would change.",
    ),
}

# ---------------------------------------------------------------------------------------------------------
# "none" utterances: (kind, user turn, assistant answer). kind "chat" is small talk (the next neutral user turn
# starts a task); kind "ask" is a one-off question or throwaway request (a follow-up can come next).
# ---------------------------------------------------------------------------------------------------------

NONE_ITEMS: tuple[tuple[str, str, str], ...] = (
    ("chat", "Morning! How's your day going?",
     "Going well, thanks for asking. What can I help you with today?"),
    ("ask", "What's the difference between CPM and CPC?",
     "CPM is what you pay per thousand impressions; CPC is what you pay per click. CPM suits awareness buying, "
     "while CPC suits traffic or response goals."),
    ("ask", "Quick one - how many characters can a post on X have these days?",
     "Standard posts are capped at 280 characters. Paid tiers allow longer posts, but 280 is still the safe "
     "default."),
    ("ask", "Can you give me a synonym for 'innovative'? I've used it three times on one slide.",
     "A few options: inventive, fresh, forward-looking, pioneering or original. 'Fresh' works well if the tone "
     "is light."),
    ("ask", "What does UTM stand for?",
     "Urchin Tracking Module, a leftover from the analytics tool that later became Google Analytics. The "
     "parameters tag links so you can see where traffic came from."),
    ("chat", "Happy Friday! Any fun plans for the weekend?",
     "No weekends for me, but I hope yours is a good one. Anything you'd like to wrap up before you log off?"),
    ("ask", "Can you translate 'limited time offer' into Spanish?",
     "'Oferta por tiempo limitado' is the usual phrasing."),
    ("ask", "Is it 'e-mail' or 'email'?",
     "'Email' without the hyphen is the common modern spelling, and most style guides have adopted it."),
    ("ask", "What's a good rule of thumb for the length of a meta description?",
     "Aim for roughly 150 to 160 characters so it doesn't get cut off in search results."),
    ("ask", "Write me a quick pun about coffee for the office chat.",
     "'I like my coffee like my deadlines: strong and slightly overdue.'"),
    ("chat", "Ugh, my laptop just restarted for updates in the middle of a call.",
     "That's always the worst timing. Hope you didn't lose anything - want to pick up wherever you were?"),
    ("ask", "What is a lookalike audience, in one sentence?",
     "It's an ad-platform audience built from people who resemble a source list, such as your customers, so "
     "you can reach new prospects with similar traits."),
    ("ask", "How do you pronounce 'GIF'? There's a heated debate going on here.",
     "Its creator said it with a soft g, like 'jif', but the hard-g version is just as common. Everyone will "
     "know what you mean either way."),
    ("ask", "Can you spell-check this sentence: 'Our new colection is avaliable now'?",
     "Corrected: 'Our new collection is available now.'"),
    ("ask", "When's a nice time of year to visit Portugal?",
     "Late spring and early autumn are lovely: warm, with fewer crowds and lower prices than midsummer."),
    ("ask", "Give me a fun name for a team quiz night.",
     "How about 'Quizzly Bears', 'The Know-It-Ales' or 'Trivia Newton-John'?"),
    ("ask", "What's the plural of 'campus'?",
     "'Campuses'."),
    ("ask", "Can you convert 250 euros to dollars, roughly?",
     "I can't see live rates, but at a typical rate of about 1.08 it's around 270 dollars. A live converter "
     "will give you the exact figure."),
    ("ask", "What does 'above the fold' mean?",
     "It's the part of a page you can see without scrolling - borrowed from newspapers, where the top half of "
     "the front page was what showed on the stand."),
    ("ask", "Tell me a random fun fact to start my morning.",
     "Octopuses have three hearts, and two of them pause while the octopus swims."),
    ("ask", "What's the difference between an em dash and an en dash?",
     "The en dash joins ranges, as in 2019-2023; the em dash sets off a break in a sentence, a bit like "
     "brackets."),
    ("ask", "I just need a one-line caption for a photo of our team lunch, nothing fancy.",
     "'Good food, better company. Thanks for a great lunch, team.'"),
    ("ask", "Is 'data' singular or plural?",
     "Both are accepted. Strictly it's plural, but 'the data shows' is now standard in most business writing."),
    ("ask", "What does the B in B2B stand for, and is B2B2C a real thing?",
     "B is for business, so B2B means selling to businesses. B2B2C is real too: selling through a business "
     "partner to that partner's consumers."),
    ("ask", "What's SaaS short for?",
     "Software as a Service: software you subscribe to and use online rather than install and own."),
    ("ask", "Can you suggest a polite way to say 'per my last email'?",
     "Try 'Just to recap what I mentioned earlier' or 'Circling back on the points below'."),
    ("chat", "It's so quiet in the office today, half the team is out sick.",
     "Sorry to hear that, I hope everyone recovers quickly. Anything I can help you get through while it's "
     "quiet?"),
    ("ask", "Who came up with the four Ps of marketing?",
     "E. Jerome McCarthy popularised product, price, place and promotion in 1960, building on Neil Borden's "
     "idea of the marketing mix."),
    ("ask", "Is there a quick way to make a word cloud without installing anything?",
     "Plenty of browser-based word cloud generators will do it: paste your text in and export the image."),
    ("chat", "Just testing whether this works - are you there?",
     "I'm here. What would you like to work on?"),
    ("ask", "Can you rewrite 'We are pleased to announce' so it sounds less stiff?",
     "Try 'We're excited to share', 'Big news:' or simply lead with the announcement itself."),
    ("ask", "What's the difference between reach and impressions?",
     "Reach counts the people who saw something at least once; impressions count every time it was shown, so "
     "impressions are always at least as high as reach."),
)

# ---------------------------------------------------------------------------------------------------------
# Neutral user turns (no memory signal).
# ---------------------------------------------------------------------------------------------------------

# Task requests that open a piece of work, each with the assistant's reply.
OPENERS: tuple[tuple[str, str], ...] = (
    ("I need a few subject line ideas for the newsletter featuring {product}.",
     "Here are a few to start with: 'A closer look at {product}', 'The small change that makes a big difference' "
     "and 'Why people are switching'. Want them punchier or calmer?"),
    ("Can you help me outline a campaign for {product}?",
     "Sure. A simple outline: the goal, who it's for, the one message we want remembered, the channels, and how "
     "we'll judge success. Let's fill those in one at a time."),
    ("I'm putting together a plan aimed at {audience} and could use a second pair of eyes.",
     "Happy to review it. Paste in what you have, or tell me the goal and the main idea, and I'll point out gaps "
     "and risks."),
    ("Could you draft a short social post announcing {product}?",
     "Here's a first draft: 'Something new is here. {Product} is ready - take a look and tell us what you "
     "think.' We can make it bolder or add a specific benefit."),
    ("Help me think through a promotion for {product} on {channel}.",
     "Let's start with three questions: what should people do after seeing it, what's the hook, and how long "
     "should it run? Once those are clear, the creative gets much easier."),
    ("I want to brainstorm some content ideas for {audience}.",
     "Some starting points: common mistakes they make, quick how-to guides, behind-the-scenes stories, and "
     "answers to the questions your front-line teams hear most."),
    ("Can you sketch a simple email sequence for new sign-ups?",
     "A simple version: a welcome on day one, a how-to on day three, a customer story on day six, and a gentle "
     "nudge towards the next step on day ten."),
    ("What would a sensible test plan for {channel} look like?",
     "Keep it tight: one hypothesis, two variants, a fixed budget and a fixed end date, with one primary metric "
     "agreed before launch."),
    ("I have to write a landing page headline for {product}. Can you help?",
     "Of course. Three directions: benefit-led ('Get more done with less effort'), problem-led ('Tired of doing "
     "it the hard way?') and proof-led ('Trusted by people like you'). Which feels closest?"),
    ("Can we work on a brief for the next {channel} campaign?",
     "Yes. Let's fill in the basics first: objective, audience, single message, call to action, budget and "
     "timing. Which of those do you already know?"),
    ("I need a rough agenda for a planning workshop next week.",
     "A simple agenda: ten minutes on goals, twenty on ideas, twenty on prioritising, and ten on owners and next "
     "steps."),
    ("Could you suggest a few article topics that would interest {audience}?",
     "A few ideas: a beginner's guide, the five questions people ask most, a myth-busting piece, and a practical "
     "checklist they can save."),
    ("Can you help me structure a short presentation about {product}?",
     "A clean structure: the problem, what {product} does about it, one example, what it takes to get started, "
     "and a clear ask at the end."),
    ("Let's work on some ad copy variations for {channel}.",
     "Three to start: 'Made for the way you actually live', 'Less hassle, better results' and 'See what you've "
     "been missing'. I can tailor them once I know the offer."),
    ("I'd like help writing a short customer survey about {product}.",
     "Keep it to eight questions or fewer: a couple on usage, a couple on satisfaction, one open question, and "
     "the profile questions at the end."),
    ("Could you turn a few rough notes into a campaign summary for me?",
     "Sure, paste the notes in. I'll turn them into a short summary with the goal, the plan, the timeline and "
     "the open questions."),
    ("I need ideas for a webinar topic aimed at {audience}.",
     "A few options: a live walk-through of a common problem, a panel with two customers, or a practical 'do "
     "this in thirty minutes' session. Hands-on formats tend to hold attention best."),
    ("Can you draft a quick FAQ for {product}?",
     "Here's a short structure: what it is, who it's for, what it costs, how to get started and where to get "
     "help. I'll draft the answers once you confirm the details."),
    ("What are some good ways to reach {audience} that we might be overlooking?",
     "Worth considering: partnerships with groups they already trust, referrals from existing customers, and "
     "the communities or newsletters they read. These are often cheaper than another paid channel."),
    ("Could you help me write a short product description for {product}?",
     "Here's a first pass: '{Product} makes everyday tasks simpler, so you can spend your time on what "
     "matters.' Tell me the top two benefits and I'll make it more specific."),
)

# Follow-up questions on the work in hand, each with the assistant's answer.
FOLLOWUPS: tuple[tuple[str, str], ...] = (
    ("Can you give me a concrete example of that?",
     "Sure. Say we're promoting {product}: instead of listing every feature, we'd pick the one problem it solves "
     "best and show a real person solving it in under a minute."),
    ("What would you do first?",
     "I'd agree the single goal and how we'll measure it. Everything else - channels, creative, timing - is "
     "easier once that's fixed."),
    ("How would we know if it's working?",
     "Pick one primary metric before launch and check it weekly. Early engagement tells you whether the message "
     "lands; conversion tells you whether it pays off."),
    ("Could you expand on the second point?",
     "Of course. The idea is to narrow the focus so each piece has one job. When a message tries to do three "
     "things, it usually does none of them well."),
    ("Makes sense. What are the main risks?",
     "A message that's too broad, a timeline that's too tight and no agreed way to measure success. Each is easy "
     "to fix if we catch it early."),
    ("How long would something like that usually take?",
     "It depends on resources, but a simple version could be ready in a week or two; a fuller programme would "
     "take more like a month."),
    ("Can you draft a first version so I can react to it?",
     "Here's a first draft: 'Meet {product}, built for {audience} who want less hassle and better results.' We "
     "can push it bolder or calmer from here."),
    ("What would that look like for {audience} specifically?",
     "For {audience} I'd emphasise practical benefits and keep the language concrete: what changes for them on "
     "day one."),
    ("Could you suggest a couple of headline options?",
     "Two options: 'The simpler way to get it done' and 'Made for people with better things to do'. The first "
     "is clearer; the second has more personality."),
    ("Is there anything I'm missing?",
     "Two things worth adding: a plan for what happens after someone responds, and a date to review results so "
     "it doesn't just run on autopilot."),
    ("OK, and how would you sequence the next steps?",
     "Three steps: agree the goal, pick the channel most likely to reach {audience}, then run a two-week test "
     "before committing more."),
    ("What would you cut if we had to simplify it?",
     "I'd cut the secondary audience and the extra channel, and keep the core message and the main offer."),
    ("Could you rework that with {product} as the focus?",
     "Sure. Lead with what {product} changes for the customer, follow with one line on how it works, and close "
     "with a single clear next step."),
    ("Interesting. Why that order?",
     "Because each step depends on the one before: there's no point choosing channels until we know who we're "
     "talking to and what we want them to do."),
    ("What's a reasonable amount to spend on a first test?",
     "Enough to get a clean read, not to win big. Work out how many conversions you need to tell the variants "
     "apart, and budget for that plus a small buffer."),
    ("Could you give me a version for {channel}?",
     "For {channel} I'd adapt it with shorter copy, one strong visual and a single link."),
    ("How would you explain this to someone outside marketing?",
     "Think of it like this: we're making it easier for the right people to notice {product}, and giving them "
     "one good reason to try it."),
    ("Good. What should the call to action be?",
     "Specific and low-friction - something like 'See how it works' rather than 'Buy now' for a first touch."),
    ("Are there brands that do this well?",
     "The ones that do it well keep the message simple, repeat it consistently and make the next step obvious. "
     "That pattern is worth copying whatever the category."),
    ("What would you look at after the first week?",
     "Early engagement: are the right people seeing it and responding at all? Leave conversion until there's "
     "enough volume to read it properly."),
    ("Let's go with that. What's next?",
     "Next I'd write the brief, line up the creative, and agree a date to review the early results."),
    ("What assumptions are you making there?",
     "Mainly that the audience already knows the category and just needs a reason to switch. If that's wrong, "
     "we'd lead with education instead."),
    ("And if the results are flat, what then?",
     "Change one variable at a time: the offer first, then the creative, then the targeting. Changing everything "
     "at once tells you nothing."),
    ("Could you give me one more alternative?",
     "One more: run it as a short series instead of a single push, with each piece answering one question people "
     "commonly ask about {product}."),
)

CLOSERS: tuple[str, ...] = (
    "Great, that's helpful. Thanks!",
    "Perfect, I'll take it from here.",
    "Thanks, that gives me enough to get started.",
    "Nice, that works for me.",
    "OK, let me think about it and come back to you.",
    "Brilliant, cheers.",
    "That's really useful, thank you.",
    "Good stuff. Talk soon.",
)

# Neutral questions appended after a signal utterance in the same user turn.
ASKS: tuple[str, ...] = (
    "Can you help me plan around that?",
    "With that in mind, where would you start?",
    "What should I keep in mind for the next campaign?",
    "Given that, how would you approach the campaign for {product}?",
    "Any thoughts?",
    "Can we use that as the starting point?",
    "What would you suggest for {audience}?",
    "Could you help me put something together?",
    "Does that change what you'd recommend?",
    "How should I factor that in?",
    "What would a sensible next step be?",
)

# Neutral lead-ins put in front of a signal utterance that opens a conversation.
LEAD_INS: tuple[str, ...] = (
    "Some context before we start: ",
    "Quick background - ",
    "Before we dive in: ",
    "One thing you should know up front: ",
    "Hi! ",
    "Hello. ",
)

# Joins two signal utterances that share one user turn.
CONNECTORS: tuple[str, ...] = (" ", " ", " Also worth knowing: ", " Separately: ")

# ---------------------------------------------------------------------------------------------------------
# Assistant replies.
# ---------------------------------------------------------------------------------------------------------

# Generic helpful replies to a neutral question appended to a signal turn (they fit any context).
GENERIC_REPLIES: tuple[str, ...] = (
    "I'd start with a one-page plan: the goal, the audience, the core message and how we'll measure it. Then we "
    "can fill in the details.",
    "My suggestion would be to pick one clear objective for the next few weeks and shape everything else around "
    "it.",
    "A sensible first step is to list what's already working, decide what to keep, and only then add anything "
    "new.",
    "I'd begin by drafting a short brief so we're both working from the same picture, then move on to the "
    "creative.",
    "Let's start small: one audience, one message, one channel, and a date to review how it went.",
    "It mostly shapes how I'd prioritise. I'd tackle the highest-impact piece first and leave the nice-to-haves "
    "for later.",
    "I'd build a simple timeline backwards from the go-live date, with review points built in, and go from there.",
    "Let me sketch a rough plan and you can tell me what to change: goal, audience, message, channels, "
    "measurement.",
    "A good next step would be to write down the two or three questions we most need answered and design the "
    "work around answering them.",
    "We can use it as the frame for everything that follows. First, let's agree what success looks like.",
    "Happy to. Let's start with the audience: who exactly are we trying to reach with {product}, and what do they "
    "need to hear?",
    "For {audience}, I'd begin with the one problem they feel most and build the first piece of work around it.",
)

# Acknowledgements after a signal turn that fit any category.
ACK_REPLIES: tuple[str, ...] = (
    "Thanks, that's useful context. I'll factor it in.",
    "Got it, noted. With that in mind, I'd begin with a short outline and refine from there.",
    "That helps a lot. I'll take it into account as we go.",
    "Understood. I'll keep that in mind for everything we work on.",
    "Good to know. Given that, I'd clarify the goal, draft a first version, then iterate.",
    "Noted, thanks for flagging it. Let's build the plan around that.",
    "Makes sense. I'll work with that.",
    "Thanks for the context - it changes a few of my assumptions, so let me adjust.",
    "OK, that's clear, and I'll work with it.",
    "Appreciate you sharing that; it'll make my suggestions a lot more relevant.",
)

# Acknowledgements that fit the topic of one category (used right after a signal of that category).
CATEGORY_REPLIES: dict[str, tuple[str, ...]] = {
    "company.brand_core": (
        "That's a clear identity to write to. I'll keep the copy in line with how {company} wants to come across.",
        "Thanks, I'll treat that as a guardrail for anything customer-facing from {company}.",
        "Helpful. I'll make sure the headlines and visuals I suggest stay consistent with that.",
        "Understood. I'll steer clear of anything that would feel off-brand for {company}.",
        "Great, that gives me a strong sense of the brand, and I'll keep it front of mind.",
    ),
    "company.strategic_signatures": (
        "That's a distinctive way of operating. I'll shape recommendations to fit how {company} usually plays it.",
        "Good to know how {company} tends to make these calls; I won't suggest anything that cuts against it.",
        "Understood. I'll frame options in terms of that principle so they're easier to get approved.",
        "That's useful - it tells me which kinds of plans will land with your leadership.",
        "Makes sense. I'll build the go-to-market suggestions around that pattern.",
    ),
    "company.knowledge_artifacts": (
        "Great, if that document exists I'll build on it rather than start from scratch.",
        "That's a useful resource. Paste in the relevant parts whenever you like and I'll stay consistent with it.",
        "Thanks, I'll reference that material so we stay aligned with what's already approved.",
        "Good to know it's there. Reusing it will save time and keep things consistent.",
        "Perfect. I'll treat that as the source of truth when we draft.",
    ),
    "company.business_priorities": (
        "Understood. I'll keep everything focused on that goal and its timeline.",
        "That's an important constraint, and I'll make sure anything I suggest fits within it.",
        "Thanks. Given that priority, I'd put everything else on the back burner for now.",
        "Got it. Let's work backwards from that date.",
        "Clear. I'll frame recommendations around what actually moves that number.",
    ),
    "company.tools_config": (
        "Thanks, knowing the stack helps. I'll keep suggestions to what that set-up can actually do.",
        "Good to know how it's wired together; I'll bear it in mind when we talk about tracking and automation.",
        "That's a sensible set-up. I'll tailor any implementation steps to those platforms.",
        "Helpful. I'll avoid recommending anything that would need a new integration.",
        "Got it. I'll assume that configuration when I describe the workflows.",
    ),
    "company.performance_context": (
        "Thanks for the numbers - that gives us a baseline to work from.",
        "That's a useful result. Let's use it to decide what to test next.",
        "Understood. Let's dig into what might be driving that.",
        "Good context. I'll keep those figures in mind when we set expectations.",
        "Helpful. With that trend in view, I'd fix the weakest step of the funnel first.",
    ),
    "user.communication_style": (
        "Will do. I'll keep my replies in that style from here on.",
        "Got it, I'll write to you that way.",
        "Understood. I'll adjust how I format and phrase things for you.",
        "Noted - expect answers in that form from now on.",
        "Sure thing, I'll remember that whenever I reply.",
    ),
    "user.strategic_approach": (
        "That's a clear philosophy. I'll shape my suggestions to fit the way you like to approach problems.",
        "Good to know how you think about it; I'll weigh the options accordingly.",
        "Makes sense. I'll keep recommendations consistent with that mindset.",
        "Understood. I'll lay out the trade-offs in those terms.",
        "That's a sensible principle. Let's apply it here.",
    ),
    "user.role_context": (
        "Thanks, that helps me understand where you sit and who you work with.",
        "Good to know your remit. I'll pitch suggestions at the right level for your role.",
        "That's helpful context on your position, and I'll keep your stakeholders in mind.",
        "Understood. I'll focus on what's within your area.",
        "Thanks for the introduction. It'll help me tailor things to your responsibilities.",
    ),
    "user.workflow_patterns": (
        "Good to know how you work. I'll time and shape things to fit that routine.",
        "Thanks. I'll make sure anything I hand over slots into that process.",
        "Understood. I'll leave room for those steps in any timeline.",
        "Helpful. I'll plan around that rhythm.",
        "Makes sense. I'll set things up so they fit your existing flow.",
    ),
    "user.session_history": (
        "Right, I remember where we left that. Let's pick it up.",
        "Great, thanks for the update. Let's carry on from that point.",
        "Good, that closes one of the open threads. On to the next bit.",
        "Perfect, let's continue where we stopped.",
        "Thanks for the recap. Picking up from there now.",
    ),
    "user.interaction_preferences": (
        "Understood. I'll work with you that way from now on.",
        "Got it. I'll change how I handle this going forward.",
        "Sounds good, and tell me if you'd like me to adjust again.",
        "Noted. I'll work that way in our sessions.",
        "Thanks for telling me. I'll adapt.",
    ),
}

# Replies to a closer.
CLOSING_REPLIES: tuple[str, ...] = (
    "You're welcome. Good luck with it.",
    "Any time. Come back whenever you want to take it further.",
    "Glad it helped. Talk soon.",
    "Happy to help - shout if anything comes up.",
    "Great. I'll be here when you're ready for the next step.",
)

# ---------------------------------------------------------------------------------------------------------
# Scenario material.
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Industry:
    name: str
    companies: tuple[str, ...]
    products: tuple[str, ...]       # noun phrases that work mid-sentence ("the Pro plan")
    audiences: tuple[str, ...]      # plural noun phrases
    channels: tuple[str, ...]
    metrics: tuple[tuple[str, str, str], ...]  # (name, current value, target); the value always misses the target


INDUSTRIES: tuple[Industry, ...] = (
    Industry("B2B software", ("Tallyfield", "Corebridge Software", "Ledgerline"),
             ("the Pro plan", "the analytics add-on", "the new reporting module"),
             ("operations managers at mid-size firms", "finance teams at growing startups",
              "IT leads in regulated industries"),
             ("LinkedIn ads", "webinars", "email", "Google search ads"),
             (("trial-to-paid conversion", "9%", "14%"), ("cost per demo request", "$420", "$300"),
              ("email click-through rate", "1.8%", "2.5%"))),
    Industry("fashion e-commerce", ("Thread & Tide", "Norla Studio", "Wildfern Apparel"),
             ("the autumn knitwear collection", "the recycled denim line", "the gift card bundle"),
             ("women aged 25 to 40 who shop online", "first-time customers from social",
              "lapsed buyers who haven't ordered in a year"),
             ("Instagram", "email", "TikTok", "Pinterest"),
             (("return on ad spend", "2.1x", "3x"), ("repeat purchase rate", "18%", "25%"),
              ("cart abandonment rate", "74%", "65%"))),
    Industry("consumer fintech", ("Pennywise Money", "Kestrel Pay", "Brightvault"),
             ("the round-up savings feature", "the premium card", "the budgeting app"),
             ("young professionals opening their first savings account", "freelancers with irregular income",
              "parents saving for school costs"),
             ("push notifications", "paid social", "app store ads", "TikTok"),
             (("install-to-account-opening rate", "22%", "30%"), ("cost per funded account", "$58", "$40"),
              ("monthly active users", "41,000", "50,000"))),
    Industry("healthcare clinics", ("Meridian Family Health", "Clearpath Health", "Harbourview Dental"),
             ("the same-day appointment service", "the annual health check package", "the new telehealth app"),
             ("busy parents", "patients over sixty", "local employers looking for staff health plans"),
             ("local search ads", "email", "Facebook", "direct mail"),
             (("online booking rate", "6%", "9%"), ("cost per new patient", "$95", "$70"),
              ("appointment no-show rate", "14%", "8%"))),
    Industry("hospitality", ("Saltmarsh Hotel Group", "Larkspur Hospitality", "Casa Ventana"),
             ("the midweek spa package", "the new rooftop restaurant", "the wedding venue offer"),
             ("couples planning weekend breaks", "corporate event planners", "families booking summer holidays"),
             ("Instagram", "email", "metasearch ads", "Google search ads"),
             (("direct booking share", "38%", "50%"), ("email revenue per send", "$1,900", "$2,500"),
              ("website conversion rate", "1.4%", "2%"))),
    Industry("beverages", ("Fizzwell", "Oakridge Cold Brew", "Brisa Sparkling"),
             ("the zero-sugar range", "the new can format", "the seasonal ginger flavour"),
             ("health-conscious shoppers in their twenties", "buyers at regional grocery chains", "gym-goers"),
             ("TikTok", "YouTube", "influencer partnerships", "retail media"),
             (("household penetration", "4%", "6%"), ("cost per thousand impressions", "$11", "$8"),
              ("trial-to-repeat rate", "21%", "30%"))),
    Industry("online education", ("Lumen Academy", "Skillpath", "Northstar Learning"),
             ("the data analytics bootcamp", "the teacher training course", "the language learning subscription"),
             ("career changers in their thirties", "school district administrators", "university students"),
             ("YouTube", "email", "Google search ads", "webinars"),
             (("lead-to-enrolment rate", "4%", "7%"), ("cost per enrolment", "$310", "$220"),
              ("course completion rate", "48%", "65%"))),
    Industry("real estate", ("Keystone Residential", "Alder & Grey", "Bayline Living"),
             ("the riverside apartment development", "the first-time buyer scheme", "the online valuation tool"),
             ("first-time homebuyers", "downsizing retirees", "buy-to-let investors"),
             ("property portals", "Facebook", "email", "local radio"),
             (("viewing requests per listing", "3", "6"), ("cost per qualified lead", "$85", "$60"),
              ("enquiry-to-viewing rate", "17%", "25%"))),
    Industry("fitness", ("Pulse Athletic", "Ironbark Strength", "Flowstate Yoga"),
             ("the January membership offer", "the personal training bundle", "the on-demand class app"),
             ("people who've never had a gym membership", "lapsed members", "office workers near our city sites"),
             ("Instagram", "SMS", "Google search ads", "Facebook"),
             (("trial-to-membership conversion", "27%", "35%"), ("monthly churn", "6.5%", "4.5%"),
              ("cost per trial sign-up", "$34", "$25"))),
    Industry("nonprofit", ("Greenline Trust", "Riverkeepers Alliance", "Open Meadows Foundation"),
             ("the monthly giving programme", "the tree-planting appeal", "the volunteer weekend"),
             ("existing one-off donors", "supporters under thirty", "corporate partners"),
             ("email", "Facebook", "direct mail", "Instagram"),
             (("donor retention rate", "41%", "55%"), ("average gift", "$38", "$50"),
              ("email response rate", "0.9%", "1.5%"))),
    Industry("automotive", ("Voltline Auto", "Crestway Auto Group", "Halden EV"),
             ("the compact electric SUV", "the service plan", "the certified used-car programme"),
             ("families replacing their second car", "fleet managers", "commuters thinking about going electric"),
             ("YouTube", "Google search ads", "email", "Facebook"),
             (("test-drive bookings per week", "40", "65"), ("cost per test drive", "$120", "$80"),
              ("lead-to-sale rate", "8%", "12%"))),
    Industry("travel", ("Wanderly", "Bluefin Travel", "Trailhead Travel Co"),
             ("the small-group Japan tour", "the last-minute deals page", "the loyalty programme"),
             ("retired couples with time to travel", "solo travellers in their twenties",
              "adventure-seeking families"),
             ("email", "Pinterest", "Google search ads", "podcast ads"),
             (("booking conversion rate", "1.1%", "1.8%"), ("email revenue per subscriber", "$0.70", "$1.10"),
              ("repeat booking rate", "19%", "28%"))),
    Industry("pet care", ("Pawsome Pantry", "Tailwind Pet Co", "Furnest"),
             ("the fresh dog food subscription", "the puppy starter box", "the grain-free cat range"),
             ("new puppy owners", "cat owners in apartments", "owners of senior dogs"),
             ("Instagram", "email", "TikTok", "Facebook"),
             (("90-day subscription retention", "58%", "70%"), ("customer acquisition cost", "$48", "$35"),
              ("first-box conversion rate", "3%", "5%"))),
    Industry("cybersecurity", ("Sentinel Grid", "Fortmark Security", "Quietwall"),
             ("the managed detection service", "the free security audit", "the endpoint protection suite"),
             ("CISOs at mid-market companies", "IT managers at schools", "small accounting firms"),
             ("LinkedIn ads", "webinars", "Google search ads", "email"),
             (("MQL-to-SQL conversion", "12%", "20%"), ("cost per MQL", "$260", "$180"),
              ("webinar attendance rate", "31%", "40%"))),
    Industry("restaurants", ("Basil & Ember", "Harbour Street Kitchen", "Noodle Yard"),
             ("the new lunch menu", "the loyalty app", "the catering service"),
             ("office workers nearby", "families at weekends", "students"),
             ("Instagram", "delivery apps", "SMS", "Google Maps"),
             (("weekday lunch covers", "140", "200"), ("loyalty app redemption rate", "9%", "15%"),
              ("delivery order share", "22%", "30%"))),
)

PEOPLE: tuple[str, ...] = ("Priya", "Marcus", "Elena", "Tom", "Aisha", "Daniel", "Mei", "Jonas", "Sofia", "Kwame",
                           "Hannah", "Luis")
QUARTERS: tuple[str, ...] = ("Q1", "Q2", "Q3", "Q4")
MONTHS: tuple[str, ...] = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
                           "October", "November", "December")
WEEKDAYS: tuple[str, ...] = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")
PCT_RANGE: tuple[int, int] = (8, 35)
