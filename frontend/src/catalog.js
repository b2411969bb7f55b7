// The store's catalog: the original's 9 products in 3 categories, prices in whole won (KRW has no minor
// unit, so a price is also the API's amount).

export const categories = [
  {
    id: 'mobile',
    name: '모바일·태블릿',
    tagline: '새로운 시즌의 플래그십',
    description: '최신 스마트폰과 태블릿을 무이자 할부로 만나보세요.',
    accent: '#2563eb',
    subheading: '모바일 베스트',
  },
  {
    id: 'appliance',
    name: '프리미엄 가전',
    tagline: '집안일을 덜어주는 프리미엄 가전',
    description: '청소, 세탁, 공기까지 한 번에.',
    accent: '#0ea5e9',
    subheading: '가전 추천',
  },
  {
    id: 'living',
    name: '홈 & 리빙',
    tagline: '머물고 싶은 공간을 위한 선택',
    description: '주방과 거실을 채우는 리빙 아이템.',
    accent: '#f97316',
    subheading: '리빙 셀렉션',
  },
];

const p = (o) => ({
  badges: [],
  highlights: [],
  shipping: '무료배송 · 내일 도착 보장',
  ...o,
});

export const products = [
  p({
    id: 'iphone-16-pro', category: 'mobile', name: 'Apple iPhone 16 Pro 256GB', brand: 'Apple',
    price: 1690000, originalPrice: 1790000, rating: 4.9, reviews: 1284,
    colors: ['화이트 티타늄', '내추럴 티타늄', '데저트 티타늄'],
    badges: ['무료배송', '오늘출발'], promoLabel: '신제품',
    shortDescription: 'A18 Pro 칩과 4K 120fps 촬영을 지원하는 프로 카메라.',
    highlights: ['A18 Pro 칩', '6.3형 ProMotion 디스플레이', '4K 120fps Dolby Vision', '티타늄 디자인'],
    monthlyInstallment: '월 70,400원 (24개월, 무이자)',
  }),
  p({
    id: 'galaxy-s25-ultra', category: 'mobile', name: 'Samsung Galaxy S25 Ultra 512GB', brand: 'Samsung',
    price: 1590000, originalPrice: 1690000, rating: 4.8, reviews: 893,
    colors: ['팬텀 블랙', '미드나잇 블루', '크림 화이트'],
    badges: ['무료배송', 'S펜 포함'], promoLabel: '사전예약 혜택',
    shortDescription: 'Galaxy AI와 2억 화소 카메라, 내장 S펜.',
    highlights: ['Snapdragon 8 Elite', '2억 화소 광각', '6.9형 QHD+', 'S펜 내장'],
    monthlyInstallment: '월 66,200원 (24개월, 무이자)',
  }),
  p({
    id: 'ipad-pro-m4', category: 'mobile', name: 'Apple iPad Pro 12.9" M4 Wi-Fi 256GB', brand: 'Apple',
    price: 1640000, originalPrice: 1740000, rating: 4.9, reviews: 642,
    colors: ['스페이스 블랙', '실버'],
    badges: ['무료배송'], promoLabel: '교육 할인',
    shortDescription: 'M4 칩과 Ultra Retina XDR 탠덤 OLED.',
    highlights: ['M4 칩', 'Ultra Retina XDR', 'Apple Pencil Pro 지원', '5.1mm 두께'],
    monthlyInstallment: '월 68,300원 (24개월, 무이자)',
  }),
  p({
    id: 'dyson-gen5detect', category: 'appliance', name: 'Dyson Gen5 Detect 무선 청소기', brand: 'Dyson',
    price: 1290000, originalPrice: 1390000, rating: 4.7, reviews: 522,
    colors: ['니켈/퍼플'],
    badges: ['무료배송', '정품등록'], promoLabel: '한정 특가',
    shortDescription: '먼지를 보여주는 레이저와 HEPA 필터.',
    highlights: ['262AW 흡입력', '그린 레이저 슬림 헤드', 'HEPA 여과', '최대 70분 사용'],
    monthlyInstallment: '월 53,700원 (24개월, 무이자)',
  }),
  p({
    id: 'lg-object-collection', category: 'appliance', name: 'LG 오브제컬렉션 워시타워 W20S', brand: 'LG',
    price: 2290000, originalPrice: 2490000, rating: 4.9, reviews: 311,
    colors: ['크림 화이트', '그레이 베이지', '딥 그린'],
    badges: ['설치 무료'], promoLabel: '베스트',
    shortDescription: '세탁기와 건조기를 하나로, AI DD 모터.',
    highlights: ['25kg 세탁 / 20kg 건조', 'AI DD', '원바디 디자인', '스팀 살균'],
    shipping: '전문 기사 방문 설치',
    monthlyInstallment: '월 95,400원 (24개월, 무이자)',
  }),
  p({
    id: 'balmung-air-purifier', category: 'appliance', name: 'Balmuda 더 에어 공기청정기', brand: 'Balmuda',
    price: 749000, originalPrice: 799000, rating: 4.8, reviews: 417,
    colors: ['화이트', '차콜 블랙'],
    badges: ['무료배송'], promoLabel: '봄맞이',
    shortDescription: '두 개의 팬으로 방 전체의 공기를 순환.',
    highlights: ['듀얼 팬', '36㎡ 적용', '저소음 모드', '필터 교체 알림'],
    monthlyInstallment: '월 62,400원 (12개월, 무이자)',
  }),
  p({
    id: 'bruno-airfryer', category: 'living', name: 'BRUNO 프리미엄 에어프라이어 오븐 16L', brand: 'BRUNO',
    price: 289000, originalPrice: 329000, rating: 4.7, reviews: 952,
    colors: ['크림 아이보리', '세이지 민트', '모던 블랙'],
    badges: ['무료배송', '오늘출발'], promoLabel: '주방 특가',
    shortDescription: '굽고, 튀기고, 발효까지 16L 오븐.',
    highlights: ['16L 대용량', '10가지 자동 메뉴', '회전 꼬치', '분리형 트레이'],
    monthlyInstallment: '월 48,100원 (6개월, 무이자)',
  }),
  p({
    id: 'breville-barista-pro', category: 'living', name: 'Breville 바리스타 프로 BES878', brand: 'Breville',
    price: 1090000, originalPrice: 1190000, rating: 4.8, reviews: 255,
    colors: ['브러시드 스테인리스', '블랙 트러플'],
    badges: ['무료배송'], promoLabel: '홈카페',
    shortDescription: '그라인더 일체형, 3초 예열 에스프레소 머신.',
    highlights: ['30단계 그라인더', 'ThermoJet 3초 예열', '스팀 완드', 'LCD 안내'],
    monthlyInstallment: '월 45,400원 (24개월, 무이자)',
  }),
  p({
    id: 'atelier-modular-sofa', category: 'living', name: 'Atelier 모듈 소파 4인용', brand: 'Atelier Lounge',
    price: 1590000, originalPrice: 1790000, rating: 4.7, reviews: 532,
    colors: ['아이보리 린넨', '그레이 트윌', '샌드 베이지'],
    badges: ['설치 무료'], promoLabel: '리빙 위크',
    shortDescription: '자유롭게 배치하는 모듈형 4인 소파.',
    highlights: ['모듈 4개 구성', '발수 패브릭', '교체형 커버', '5년 프레임 보증'],
    shipping: '화물 배송 · 설치 포함',
    monthlyInstallment: '월 66,200원 (24개월, 무이자)',
  }),
];

export const productById = (id) => products.find((x) => x.id === id);
